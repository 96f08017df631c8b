"""A run writes only in its run dir, the cache and the zoo, and its console shows sparsify's
messages: third-party chatter goes to run.log only. Checked in subprocesses with an empty HOME,
so that the environment variables apply before the libraries are imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparsify.environment import environment_variables, prepare_environment
from tests.fixtures.hf_models import make_tiny_bert
from tests.fixtures.text import make_text_classification

ROOT = Path(__file__).resolve().parents[1]


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    """This environment with HOME an empty folder, the cache under tmp_path, and no variable
    that would point a library's files elsewhere than HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "HF_", "YOLO_", "ORT_", "TRANSFORMERS_", "TORCH_"))
    }
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    env.update(HOME=str(tmp_path / "home"), SPARSIFY_CACHE=str(tmp_path / "cache"))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_prepare_environment_leaves_what_the_user_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in environment_variables(tmp_path):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("YOLO_CONFIG_DIR", "/mine")
    applied = prepare_environment(tmp_path)
    assert os.environ["YOLO_CONFIG_DIR"] == "/mine" and "YOLO_CONFIG_DIR" not in applied
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_ultralytics_settings_go_to_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    env = _isolated_env(tmp_path)
    code = textwrap.dedent(
        """
        import os
        from pathlib import Path
        from sparsify.environment import prepare_environment
        prepare_environment(Path(os.environ["SPARSIFY_CACHE"]))
        import ultralytics.utils
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "cwd", env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert _everything_under(tmp_path / "home") == []
    assert (tmp_path / "cache" / "ultralytics" / "Ultralytics" / "settings.json").is_file()


# console lines a transformer run used to print, each with where it comes from
CHATTER = {
    "LOAD REPORT": "transformers' table of missing head weights",
    "TracerWarning": "torch.onnx export, through `warnings`",
    "Please consider": "ONNX Runtime's quantizer, through the root logger",
    "CleanUnusedInitializersAndNodeArgs": "ONNX Runtime's C++ logger (run and Pipeline load)",
    "Loading weights": "transformers' weight-loading progress bar",
    "Writing model shards": "transformers' save progress bar",
    "'train_runtime'": "the HF Trainer's PrinterCallback (a dict per log)",
}
# the Python-level ones also land in run.log (the C++ ones and the bars are off)
IN_RUN_LOG = ("LOAD REPORT", "TracerWarning", "Please consider", "'train_runtime'")

RUN = textwrap.dedent(
    """
    import sys
    import sparsify
    from sparsify.deploy import Pipeline
    data, model, run_dir = sys.argv[1:4]
    result = sparsify.run(
        [
            "use_case=sentiment", f"data.path={data}", f"model={model}", "optim_level=0.5",
            "experiment.train.max_steps=4", "experiment.train.batch_size=4",
            "experiment.calibration_samples=40", "data.max_length=32", "data.batch_size=4",
            "baseline.gate=off", "baseline.min_steps=1", "benchmark.time_s=0.05",
            "benchmark.warmup_s=0.01", "benchmark.batch_sizes=[1]",
        ],
        run_dir=run_dir,
    )
    assert result.status == "done", result.error
    Pipeline(result.deployment_dir)("a great movie")
    """
)


def test_a_run_writes_nothing_outside_and_keeps_chatter_in_run_log(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    # made here, so that the run's process imports Hugging Face only inside the run
    model = make_tiny_bert(tmp_path / "bert")
    data = make_text_classification(tmp_path / "data")
    env = _isolated_env(tmp_path)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(data), str(model), str(run_dir)],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    # nothing in HOME (Ultralytics settings, ONNX Runtime's ~/.cache/Microsoft, HF caches),
    # nothing in the working directory; the cache is allowed
    assert _everything_under(tmp_path / "home") == []
    assert _everything_under(tmp_path / "cwd") == []
    shown = {s: why for s, why in CHATTER.items() if s in console}
    assert not shown, shown
    run_log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert [s for s in IN_RUN_LOG if s not in run_log] == []
    # sparsify's own lines stay on the console, the misleading ones reworded
    assert "Stage sparsify: done" in console
    assert "these 2 labels; 2 head tensors are new" in console
    assert "The train split has only 12 samples: calibrating on all 12" in console
