"""The one check every image dataset runs on every image before a run starts."""

from __future__ import annotations

import os

from PIL import Image


def check_image(path: str, min_side: int = 1) -> str | None:
    """Why the image cannot be used ("cannot be read (...)", "is truncated (...)",
    "is WxH pixels"), or None when it can.

    verify() checks structure and checksums without decoding pixels: cheap enough for every
    file of a large dataset. It passes JPEGs cut short, which then fail mid-training with
    "image file is truncated" naming no file, so JPEGs without an end marker are decoded.
    """
    try:
        with Image.open(path) as image:
            image.verify()
            width, height = image.size
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if min(width, height) < min_side:
        return f"is {width}x{height} pixels, under the {min_side}-pixel minimum side"
    if os.path.splitext(path)[1].lower() in {".jpg", ".jpeg"}:
        return _check_jpeg_end(path)
    return None


def _check_jpeg_end(path: str) -> str | None:
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        if f.read() == b"\xff\xd9":
            return None
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the same here
        return f"is truncated ({type(exc).__name__}: {exc})"
    return None
