"""`sparsify zoo ...` through the installed console script, as a user runs it."""

from __future__ import annotations

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
