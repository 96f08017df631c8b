"""Files written so that a crash never leaves a half-written one, with the user's umask.

`tempfile.mkstemp` / `mkdtemp` create 0600 files and 0700 folders whatever the umask says; a
file or folder renamed into place keeps that mode, so a run's model.onnx or a zoo entry came
out private while every other file was 0644. `temp_file` / `temp_dir` are the one place that
creates such temporaries, with the mode a plain `open` / `mkdir` would have given."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """This process's umask. Read from /proc (Linux) because `os.umask` can only be read by
    setting it, which races with threads creating files meanwhile."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path` the mode `open`/`mkdir` would have: 0666 (file) or 0777 (folder) less umask."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def temp_file(directory: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """`tempfile.mkstemp` in `directory`, with the umask's mode: (open fd, path)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    return fd, Path(name)


def temp_dir(directory: Path | None, prefix: str) -> Path:
    """`tempfile.mkdtemp` in `directory` (None: the system temp dir), with the umask's mode."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    apply_umask(path)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
