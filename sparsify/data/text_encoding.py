"""Telling a UTF-16 / UTF-32 text file from UTF-8 by its first bytes, so the user gets the
right `iconv` command instead of "not valid UTF-8" on every line."""

from __future__ import annotations

import codecs

# UTF-32 first: the UTF-32-LE byte-order mark starts with UTF-16-LE's
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
HEAD_BYTES = 4096  # what is read to tell the encoding


def wide_encoding(head: bytes) -> tuple[str, str] | None:
    """(iconv encoding name, how it was recognised) when `head`, a file's first bytes, is
    UTF-16 or UTF-32 text; None otherwise (UTF-8 holds no NUL bytes in text)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, "it starts with a byte-order mark"
    head = head[: len(head) - len(head) % 4]
    if len(head) < 4 or b"\0" not in head:
        return None

    def nul_share(offset: int, step: int) -> float:
        part = head[offset::step]
        return part.count(0) / len(part)

    # ASCII text in a wide encoding puts NULs beside every character, on a fixed side
    guess = "NUL bytes sit beside its characters"
    if min(nul_share(i, 4) for i in (1, 2, 3)) > 0.9 and nul_share(0, 4) < 0.1:
        return "UTF-32LE", guess
    if min(nul_share(i, 4) for i in (0, 1, 2)) > 0.9 and nul_share(3, 4) < 0.1:
        return "UTF-32BE", guess
    if nul_share(1, 2) > 0.5 and nul_share(0, 2) < 0.1:
        return "UTF-16LE", guess
    if nul_share(0, 2) > 0.5 and nul_share(1, 2) < 0.1:
        return "UTF-16BE", guess
    return None
