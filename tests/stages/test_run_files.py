"""What a run leaves on disk: files with the user's umask, and a manifest that says what
produced it (versions, commit, CPU, cores)."""

from __future__ import annotations

import json
import os
import re
import stat
from importlib import metadata
from pathlib import Path

import pytest

import sparsify
from sparsify.environment import engine_versions, git_commit
from sparsify.fileio import atomic_write_text, temp_dir, temp_file
from sparsify.zoo import add_run
from tests.conftest import TINY_RUN


@pytest.fixture(scope="module")
def run_022(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, and a zoo entry made from it, both under umask 022."""
    old = os.umask(0o022)
    try:
        run_dir = tmp_path_factory.mktemp("run") / "r"
        result = sparsify.run([f"data.path={tiny_images}", *TINY_RUN], run_dir=run_dir)
        assert result.status == "done", result.error
        add_run(run_dir, "tiny", "smallest", run_dir.parent / "zoo")
    finally:
        os.umask(old)
    return run_dir


def _modes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in [root, *root.rglob("*")]
    }


def test_every_file_and_folder_follows_the_umask(run_022: Path) -> None:
    for root in (run_022, run_022.parent / "zoo"):
        modes = _modes(root)
        wrong = {
            name: mode
            for name, mode in modes.items()
            if mode != ("0o755" if (root / name).is_dir() else "0o644")
        }
        assert not wrong, wrong
    # the files that came out 0600 before (written through mkstemp + rename)
    for name in ("deployment/config.json", "sparsify/model.onnx", "manifest.json"):
        assert _modes(run_022)[name] == "0o644"
    assert _modes(run_022.parent / "zoo")["tiny"] == "0o755"


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_temporaries_take_the_umask(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        fd, tmp = temp_file(tmp_path, prefix=".t.")
        os.close(fd)
        folder = temp_dir(tmp_path, prefix=".d.")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE(tmp.stat().st_mode) == file_mode
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode


def test_the_manifest_says_what_produced_the_run(run_022: Path) -> None:
    import onnxruntime

    env = json.loads((run_022 / "manifest.json").read_text())["environment"]
    assert env["sparsify"] == sparsify.__version__
    if git_commit() is None:  # an installed copy
        assert env["git_commit"] is None
    else:  # a checkout (its HEAD may move on while the tests run)
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", env["git_commit"]), env["git_commit"]
    assert env["python"].count(".") == 2
    for name in ("torch", "onnx", "onnxruntime"):
        assert env["packages"][name] == metadata.version(name)
    assert set(env["packages"]) >= {"torchvision", "transformers", "ultralytics"}
    assert env["engines"] == {"onnxruntime": onnxruntime.__version__}  # as the worker reported
    assert env["cpus_available"] == len(os.sched_getaffinity(0))
    assert env["cpu"] and isinstance(env["cpu_flags"], list)
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0].split()
    assert ("AVX2" in env["cpu_flags"]) == ("avx2" in flags)


def test_no_git_checkout_is_no_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "sparsify"
    package.mkdir(parents=True)
    assert git_commit(package) is None  # an installed copy: no .git beside it
    (tmp_path / "site" / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_commit(package) is None  # a checkout, but no git to ask


def test_engine_versions_come_from_what_the_workers_reported() -> None:
    bench = {
        "engines": {
            "deepsparse": {"baseline": {"benchmarks": [{"engine_version": "1.8.0"}]}},
            "onnxruntime": {"baseline": {"benchmarks": []}},
        }
    }
    assert engine_versions(bench) == {"deepsparse": "1.8.0"}
