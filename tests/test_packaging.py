"""The package ships its configs and recipes, also when installed without -e."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_code_folder_is_listed_as_a_package() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("sparsify", "hydra_plugins")  # hydra_plugins/: our Hydra launcher plugin
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk | {"sparsify.conf", "sparsify.builtin_recipes", "hydra_plugins"} == listed


@pytest.mark.slow
def test_non_editable_install_finds_the_shipped_configs(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    wheel = next(wheels.glob("sparsify-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "sparsify/conf/config.yaml",
        "sparsify/conf/use_case/cv-detection.yaml",
        "sparsify/conf/experiment/one_shot.yaml",
        "sparsify/conf/data/digits.yaml",
        "sparsify/builtin_recipes/one_shot.yaml",
    ):
        assert required in names
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300
    )
    code = (
        "import sparsify, sparsify.config as c, sparsify.recipes.recipe as r;"
        "cfg = c.compose_config(['use_case=ner']);"
        "print(sparsify.__file__); print(cfg.use_case.name); print(r.builtin_recipes())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert out[0].startswith(str(target))  # the installed copy, not the source tree
    assert out[1] == "nlp-named_entity_recognition"
    assert "one_shot" in out[2]
