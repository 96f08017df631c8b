"""Deployment folders shared by the deploy tests (built once per session)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import sparsify
from sparsify.runner import RunResult
from tests.conftest import TINY_RUN
from tests.deploy.builders import nlp_deployment, yolo_deployment
from tests.fixtures.yolo import offline_settings

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.fixture(scope="session")
def classifier_run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A finished cv-classification one-shot run (tiny net, 16 px, 51 % sparse + INT8)."""
    run_dir = tmp_path_factory.mktemp("cls") / "run"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.5", *TINY_RUN], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return result


@pytest.fixture(scope="session")
def yolo_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not HAS_ULTRALYTICS:
        pytest.skip("ultralytics not installed")
    config = tmp_path_factory.mktemp("yolo_config")
    with offline_settings(config):
        yield config


@pytest.fixture(scope="session")
def yolo_deployments(
    yolo_offline: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """use case -> (deployment folder, Ultralytics checkpoint of the same model)."""
    return {
        use_case: yolo_deployment(tmp_path_factory.mktemp(use_case), use_case)
        for use_case in ("cv-detection", "cv-segmentation")
    }


@pytest.fixture(scope="session")
def nlp_deployments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """use case -> its deployment folder (a torch copy of the model in ../run/fetch/model)."""
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers not installed")
    from tests.deploy.builders import NLP_USE_CASES

    return {uc: nlp_deployment(tmp_path_factory.mktemp(uc), uc) for uc in NLP_USE_CASES}
