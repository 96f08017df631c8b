"""`sparsify serve` as a user runs it: a subprocess on a free port, then HTTP over loopback."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sparsify.cli import serve
from sparsify.errors import SparsifyError
from sparsify.runner import RunResult
from tests.deploy.builders import blue_png_request, serving

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def test_serve_subcommand_serves_until_stopped(classifier_run: RunResult, tmp_path: Path) -> None:
    options = ["--max-body-mb", "0.01", "--threads", "1"]
    with serving(classifier_run.deployment_dir, options, tmp_path / "serve.log") as url:
        reply = httpx.post(f"{url}/predict", json=blue_png_request(), timeout=30, trust_env=False)
        assert reply.status_code == 200 and reply.json()["predictions"][0]["label"] in "abc"
        big = {"inputs": "A" * 20_000}  # over --max-body-mb 0.01 (10 KiB)
        assert (
            httpx.post(f"{url}/predict", json=big, timeout=30, trust_env=False).status_code == 413
        )
        info = httpx.get(f"{url}/info", timeout=5, trust_env=False).json()
        assert info["max_body_bytes"] == int(0.01 * 2**20) and info["engine"] == "onnxruntime"


def test_serve_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        ([], "deployment_dir"),
        ([str(tmp_path), "--port", "99999"], "not a port number"),
        ([str(tmp_path), "--max-body-mb", "0"], "must be above 0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            serve.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    args = serve.parser().parse_args([str(tmp_path)])
    assert (args.host, args.port, args.engine) == ("127.0.0.1", 8000, "onnxruntime")
    with pytest.raises(SparsifyError, match="not a sparsify deployment folder"):
        serve.main([str(tmp_path), "--port", "0"])
    with pytest.raises(SparsifyError, match="is not a folder"):
        serve.main([str(tmp_path / "missing")])


def test_missing_fastapi_names_the_extra(
    classifier_run: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(SparsifyError, match=r"pip install 'sparsify\[serve\]'"):
        serve.main([str(classifier_run.deployment_dir)])


def test_pixel_limit_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = serve.parser().parse_args([str(tmp_path)])
    assert (args.max_pixels_per_image, args.max_pixels_per_request) == (40_000_000, 100_000_000)
    args = serve.parser().parse_args(
        [str(tmp_path), "--max-pixels-per-image", "1_000_000", "--max-pixels-per-request", "5"]
    )
    assert (args.max_pixels_per_image, args.max_pixels_per_request) == (1_000_000, 5)
    for option, value, message in (
        ("--max-pixels-per-image", "0", "must be at least 1"),
        ("--max-pixels-per-request", "lots", "is not a whole number"),
        ("--max-batch", "-1", "must be at least 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            serve.main([str(tmp_path), option, value])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_truncated_model_is_one_error_naming_the_file(
    classifier_run: RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sparsify.cli.main import _subcommand

    deployment = tmp_path / "deployment"
    shutil.copytree(classifier_run.deployment_dir, deployment)
    model = deployment / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(SystemExit) as exit_info:
        _subcommand("serve", [str(deployment), "--port", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"cannot load the model {model}: it is damaged" in err
    assert "stages=[package]" in err and "copy the deployment folder again" in err
