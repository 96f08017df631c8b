"""`sparsify zoo ...` through the installed console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPARSIFY = Path(sys.executable).with_name("sparsify")


def zoo(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPARSIFY_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(SPARSIFY), "zoo", *args], capture_output=True, text=True, env=env, timeout=180
    )


@pytest.mark.slow
def test_add_list_show_remove(finished_run: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    out = zoo("list", cache=cache)
    assert out.returncode == 0, out.stderr
    assert f"Local zoo: {cache / 'zoo'}" in out.stdout
    assert "In the catalog, not on this machine" in out.stdout
    assert "mobilenet_v2-digits-pruned75" in out.stdout and "scripts/build_zoo.py" in out.stdout

    out = zoo("add", str(finished_run), "--name", "tiny-run", "--tier", "medium", cache=cache)
    assert out.returncode == 0, out.stderr
    assert "added tiny-run (medium pruned_int8, 80% sparse)" in out.stdout
    assert (cache / "zoo" / "tiny-run" / "model.pth").is_file()

    out = zoo(
        "add", str(finished_run), "--name", "bert-base-uncased", "--tier", "medium", cache=cache
    )
    assert out.returncode == 2 and "Pick another --name, or --force" in out.stderr

    out = zoo("list", "--use-case", "ic", cache=cache)
    here = out.stdout.split("In the catalog")[0]
    assert "tiny-run" in here and "medium" in here and "80%" in here and "local:" in here
    assert "bert-base-uncased" not in out.stdout  # filtered to cv-classification

    out = zoo("show", "tiny-run", "--verify", cache=cache)
    assert out.returncode == 0, out.stderr
    assert "arch: tinynet" in out.stdout and "verified sha256:" in out.stdout

    out = zoo("remove", "tiny-run", cache=cache)
    assert out.returncode == 0 and not (cache / "zoo" / "tiny-run").exists()


def test_errors_exit_2_with_what_to_do(tmp_path: Path) -> None:
    out = zoo("show", "bert-base-uncasd", cache=tmp_path)
    assert out.returncode == 2
    assert "close matches: bert-base-uncased" in out.stderr
    out = zoo("list", "--use-case", "telepathy", cache=tmp_path)
    assert out.returncode == 2 and "not a known use case" in out.stderr
    out = zoo("remove", "bert-base-uncased", cache=tmp_path)
    assert out.returncode == 2 and "shipped catalog cannot be removed" in out.stderr
    out = zoo("add", str(tmp_path), "--name", "x", "--tier", "medium", cache=tmp_path)
    assert out.returncode == 2 and "not a run directory" in out.stderr
    out = zoo("add", str(tmp_path), "--name", "x", "--tier", "huge", cache=tmp_path)
    assert out.returncode == 2 and "invalid choice" in out.stderr  # argparse


def _decoy(path: Path) -> Path:
    """A folder that looks like a zoo entry (so only the path check can save it)."""
    path.mkdir(parents=True)
    (path / "zoo.json").write_text("{}")
    (path / "model.pth").write_bytes(b"keep me")
    return path


def test_remove_refuses_paths_out_of_the_zoo(tmp_path: Path) -> None:
    """`zoo remove ../decoy` used to delete ../decoy: a path is not a name."""
    zoo_root = tmp_path / "my-zoo"
    zoo_root.mkdir()
    decoy = _decoy(tmp_path / "decoy")
    for name in ("../decoy", str(decoy), "decoy/..", "..", "a/../../decoy", "x\n"):
        out = zoo("remove", name, "--zoo-dir", str(zoo_root), cache=tmp_path / "cache")
        assert out.returncode == 2, (name, out.stdout, out.stderr)
        assert "is not a zoo model name" in out.stderr and "Traceback" not in out.stderr
        assert (decoy / "model.pth").read_bytes() == b"keep me"


def _run_zoo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`sparsify zoo ARGV` in-process, through the CLI's own error handling."""
    from sparsify.cli.main import _subcommand

    with pytest.raises(SystemExit) as exit_info:
        _subcommand("zoo", argv)
    code = exit_info.value.code
    return int(code) if isinstance(code, int) else 1, capsys.readouterr().err


def test_symlinks_out_of_the_zoo_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARSIFY_CACHE", str(tmp_path / "cache"))
    zoo_root = tmp_path / "zoo"
    zoo_root.mkdir()
    outside = _decoy(tmp_path / "outside")
    (zoo_root / "evil").symlink_to(outside, target_is_directory=True)
    code, err = _run_zoo(["remove", "evil", "--zoo-dir", str(zoo_root)], capsys)
    assert code == 2 and "outside the zoo dir" in err and "Traceback" not in err
    assert (outside / "model.pth").read_bytes() == b"keep me"
    for argv in (["show", "../outside"], ["show", str(outside)], ["remove", "/"]):
        code, err = _run_zoo([*argv, "--zoo-dir", str(zoo_root)], capsys)
        assert code == 2 and "is not a zoo model name" in err, (argv, err)
    code, err = _run_zoo(
        ["add", str(tmp_path), "--name", "../x", "--tier", "medium", "--zoo-dir", str(zoo_root)],
        capsys,
    )
    assert code == 2 and "is not a zoo model name" in err
    assert (zoo_root / "evil").is_symlink() and outside.is_dir()


def test_link_out_of_the_zoo_is_skipped_and_a_link_inside_removed_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sparsify.zoo import LocalZoo
    from tests.zoo.conftest import entry

    zoo_root = tmp_path / "zoo"
    real = zoo_root / "real"
    real.mkdir(parents=True)
    (real / "model.pth").write_bytes(b"weights")
    (real / "zoo.json").write_text(json.dumps({**entry("real"), "artifact": "model.pth"}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pth").write_bytes(b"weights")
    (outside / "zoo.json").write_text(json.dumps({**entry("evil"), "artifact": "model.pth"}))
    (zoo_root / "evil").symlink_to(outside, target_is_directory=True)
    escape = zoo_root / "escape"
    escape.mkdir()
    (escape / "zoo.json").write_text(json.dumps({**entry("escape"), "artifact": "../../outside"}))
    local = LocalZoo(zoo_root)
    assert [e["name"] for e in local.entries()] == ["real"]
    problems = "\n".join(str(p) for p in local.problems)
    assert "outside the zoo dir" in problems and "points outside its folder" in problems

    (zoo_root / "alias").symlink_to(real, target_is_directory=True)
    assert local.remove("alias") == zoo_root / "alias"
    assert not (zoo_root / "alias").exists() and (real / "model.pth").is_file()
