"""Listing dataset folders without tripping over what a folder can hold: hidden files, links
that loop or point nowhere, and folder links that lead back up the tree.

`os.DirEntry.is_dir()` / `is_file()` raise `OSError` (ELOOP) on a link that points at itself,
so every format lists folders through these helpers and reports such a link as a Problem.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sparsify.errors import Problem


def visible_entries(folder: Path | str) -> list[os.DirEntry[str]]:
    """Entries of `folder`, hidden ones ('.DS_Store', '.complete', ...) left out, by name."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def link_problem(entry: os.DirEntry[str]) -> Problem | None:
    """A Problem for a symbolic link that cannot be followed (a loop, a missing target), or
    None for anything else; only links are stat'ed, so plain files cost nothing extra."""
    if not entry.is_symlink():
        return None
    try:
        os.stat(entry.path)
    except OSError as exc:
        try:
            target = os.readlink(entry.path)
        except OSError:
            target = "?"
        if exc.errno == errno.ELOOP:
            message = f"symbolic link loop ({exc.strerror}): it leads back to itself"
        elif exc.errno == errno.ENOENT:
            message = "symbolic link to a file or folder that does not exist"
        else:
            message = f"symbolic link cannot be followed ({exc.strerror})"
        fix = f"point the link at a real file (ln -sfn <target> {entry.path}) or delete it"
        return Problem(entry.path, target, message, fix)
    return None


def is_dir(entry: os.DirEntry[str]) -> bool:
    """`entry.is_dir()`, False instead of an error for a link that cannot be followed."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def is_file(entry: os.DirEntry[str]) -> bool:
    """`entry.is_file()`, False instead of an error for a link that cannot be followed."""
    try:
        return entry.is_file()
    except OSError:
        return False


def walk_files(
    folder: Path, problems: list[Problem] | None = None
) -> list[tuple[str, os.DirEntry[str]]]:
    """(path relative to `folder`, entry) of every visible file below it, sorted.

    Folder links are followed once: a link back to a folder already read (e.g. `ln -s ..`)
    would list the same images again under ever longer names. Such links and broken links
    become problems when `problems` is given, and are skipped silently otherwise.
    """
    found: list[tuple[str, os.DirEntry[str]]] = []
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(folder)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    stack = [(Path(folder), "")]
    while stack:
        current, prefix = stack.pop()
        for entry in visible_entries(current):
            rel = prefix + entry.name
            broken = link_problem(entry)
            if broken is not None:
                if problems is not None:
                    problems.append(broken)
                continue
            if not entry.is_dir():
                found.append((rel, entry))
                continue
            st = os.stat(entry.path)
            if (st.st_dev, st.st_ino) in seen:
                if problems is not None:
                    fix = f"remove the link {entry.path}; each folder must be listed once"
                    msg = "folder link leads to a folder already read (a loop, or a 2nd link)"
                    target = os.readlink(entry.path) if entry.is_symlink() else entry.path
                    problems.append(Problem(entry.path, target, msg, fix))
                continue
            seen.add((st.st_dev, st.st_ino))
            stack.append((Path(entry.path), rel + "/"))
    return sorted(found, key=lambda item: item[0])
