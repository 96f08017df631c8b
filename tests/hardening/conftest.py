"""A sandbox per case: HOME, the working directory, SPARSIFY_CACHE and the zoo dir under one
tmp folder, so the corpus can see every file a refused input made."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsify.environment import environment_variables
from tests.hardening.assets import build_assets
from tests.hardening.harness import Sandbox


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_assets(tmp_path_factory.mktemp("hardening_assets"))


@pytest.fixture(autouse=True)
def _own_log_handlers() -> Iterator[None]:
    """Hydra and `sparsify serve` attach handlers to the stream of the test that ran them
    (pytest's capture, closed afterwards): each case starts and ends with the handlers it
    found, so a later case's log line does not hit a closed stream."""
    loggers = [logging.getLogger(), logging.getLogger("sparsify")]
    saved = [(lg, lg.handlers[:], lg.level) for lg in loggers]
    yield
    for lg, handlers, level in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, assets: Path) -> Sandbox:
    box = Sandbox(tmp_path / "box", assets)
    box.make()
    monkeypatch.setenv("HOME", str(box.home))
    monkeypatch.setenv("SPARSIFY_CACHE", str(box.cache))
    # a run sets these once per process (under its cache) unless they are set: unset them so
    # this case's run points them at this case's cache, and restore them afterwards
    for name in environment_variables(box.cache):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(box.work)
    return box
