"""Folders a run cannot write or read: one error naming the key, before anything runs.

Where the suite runs as root, a chmod stops nothing: read-only places are then a path below
a file, /sys (read-only for root too) and /proc/1/map_files (unreadable without
CAP_SYS_ADMIN); the chmod cases run where the suite is not root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsify.config import compose_config
from sparsify.errors import ValidationError
from sparsify.paths import check_paths

BIN = Path(sys.executable).parent
SYS_READ_ONLY = Path("/sys/kernel")


def _cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, env={**os.environ}, timeout=300
    )


def _assert_clean_error(proc: subprocess.CompletedProcess[str], key: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"1. {key} = " in proc.stderr and "fix: set " in proc.stderr
    assert "Traceback" not in proc.stderr


def _sys_is_read_only() -> bool:
    try:
        tempfile.mkstemp(dir=SYS_READ_ONLY)
    except OSError:
        return True
    return False


needs_read_only_sys = pytest.mark.skipif(
    not SYS_READ_ONLY.is_dir() or not _sys_is_read_only(), reason="needs a read-only /sys"
)


@pytest.mark.parametrize("cli", ["sparsify", "sparsify.run"])
def test_working_dir_below_a_file(cli: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    working_dir = tmp_path / "file" / "runs"
    if cli == "sparsify":
        proc = _cli(cli, "data=digits", f"working_dir={working_dir}")
    else:
        args = ("--use-case", "ic", "--data", str(tmp_path), "--working-dir", str(working_dir))
        proc = _cli(cli, "one-shot", *args)
    _assert_clean_error(proc, "working_dir")
    assert f"{tmp_path / 'file'} is a file" in proc.stderr


def test_run_dir_is_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = _cli("sparsify", "data=digits", f"run_dir={tmp_path / 'file'}")
    _assert_clean_error(proc, "run_dir")
    assert "is a file, not a folder" in proc.stderr


def test_sweep_in_a_working_dir_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = _cli("sparsify", "-m", "optim_level=0.0,0.5", f"working_dir={tmp_path / 'file'}")
    _assert_clean_error(proc, "working_dir")


@needs_read_only_sys
def test_read_only_run_dir_for_later_stages() -> None:
    proc = _cli("sparsify", "data=digits", f"run_dir={SYS_READ_ONLY}", "stages=[benchmark,package]")
    _assert_clean_error(proc, "run_dir")
    assert f"{SYS_READ_ONLY} cannot be written" in proc.stderr


@needs_read_only_sys
def test_read_only_cache_with_nothing_cached(tmp_path: Path) -> None:
    cache = SYS_READ_ONLY / "sparsify-cache"
    proc = _cli("sparsify", "data=digits", f"cache_dir={cache}", f"working_dir={tmp_path}")
    _assert_clean_error(proc, "cache_dir")
    assert "the demo dataset digits" in proc.stderr and "baseline" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made the run directory


# --- permission cases ---------------------------------------------------------------
# chmod binds everyone but root; a root run (this sandbox) checks the same messages on
# places the kernel keeps read-only or unreadable for root too, where it has them.

not_root = pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")
UNREADABLE = Path("/proc/1/map_files")  # needs CAP_SYS_ADMIN to list, even for root


def _unreadable_for_root() -> bool:
    try:
        next(os.scandir(UNREADABLE), None)
    except OSError:
        return True
    return False


def _cached_baseline(cache: Path) -> None:
    entry = cache / "baselines" / "image_classifier-resnet18-0123456789abcdef"
    entry.mkdir(parents=True)
    (entry / "baseline.json").write_text(json.dumps({}))
    (cache / "baselines" / "measured").mkdir()
    (cache / "baselines" / "measured" / "0123456789abcdef.json").write_text("{}")


def _refused(cfg: object, run_dir: Path) -> list[str]:
    try:
        check_paths(cfg, run_dir)  # type: ignore[arg-type]
    except ValidationError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders appended here are made read-only, and writable again afterwards."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        if folder.exists():
            folder.chmod(0o755)


@not_root
def test_read_only_run_dir_of_an_earlier_run(tmp_path: Path, read_only: list[Path]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o555)
    read_only.append(run_dir)
    cfg = compose_config([f"data.path={tmp_path}", "stages=[benchmark,package]"])
    (problem,) = _refused(cfg, run_dir)
    assert problem.startswith(f"run_dir = '{run_dir}': {run_dir} cannot be written")


@not_root
def test_cache_that_cannot_be_read(tmp_path: Path, read_only: list[Path]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o000)
    read_only.append(cache)
    cfg = compose_config([f"data.path={tmp_path}", f"cache_dir={cache}"])
    (problem,) = _refused(cfg, tmp_path / "run")
    assert problem.startswith(f"cache_dir = '{cache}': {cache} cannot be read")


@pytest.mark.skipif(not _unreadable_for_root(), reason=f"{UNREADABLE} is readable here")
def test_cache_that_cannot_be_read_even_by_root(tmp_path: Path) -> None:
    proc = _cli("sparsify", "data=digits", f"cache_dir={UNREADABLE}", f"working_dir={tmp_path}")
    _assert_clean_error(proc, "cache_dir")
    assert f"{UNREADABLE} cannot be read" in proc.stderr


@not_root
def test_read_only_cache_is_fine_once_the_baseline_is_cached(
    tmp_path: Path, read_only: list[Path]
) -> None:
    cache = tmp_path / "cache"
    _cached_baseline(cache)
    folders = [p for p in (cache, *cache.rglob("*")) if p.is_dir()]
    cfg = compose_config([f"data.path={tmp_path}", f"cache_dir={cache}"])
    for folder in reversed(folders):
        folder.chmod(0o555)
        read_only.append(folder)
    assert _refused(cfg, tmp_path / "run") == []
    (cache / "baselines").chmod(0o755)  # without the cached baseline it is refused
    shutil.rmtree(cache / "baselines" / "image_classifier-resnet18-0123456789abcdef")
    (cache / "baselines").chmod(0o555)
    (problem,) = _refused(cfg, tmp_path / "run")
    assert problem.startswith("cache_dir") and "none is cached yet" in problem


def test_a_cached_baseline_lets_a_run_read_a_cache_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same decision as above, where root cannot be stopped by chmod: the cache is
    reached through a path below a file (not writable by anyone)."""
    cache = tmp_path / "cache"
    _cached_baseline(cache)
    cfg = compose_config([f"data.path={tmp_path}", f"cache_dir={cache}"])
    assert _refused(cfg, tmp_path / "run") == []
    shutil.rmtree(cache)
    (tmp_path / "cache").write_text("not a folder")
    cfg = compose_config([f"data.path={tmp_path}", f"cache_dir={cache / 'sub'}"])
    (problem,) = _refused(cfg, tmp_path / "run")
    assert "none is cached yet" in problem and f"{cache} is a file" in problem


def test_writable_folders_pass(tmp_path: Path) -> None:
    cfg = compose_config([f"data.path={tmp_path}", f"cache_dir={tmp_path / 'cache'}"])
    check_paths(cfg, tmp_path / "runs" / "new")
    assert not (tmp_path / "runs").exists()  # checking creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="is a file"):
        check_paths(cfg, tmp_path / "file")
