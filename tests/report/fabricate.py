"""Run directories as a finished (or failed) run leaves them, written without running one.

The layout is the one `tests/report/test_run_record.py` writes (config.yaml, manifest.json
with per-stage outputs) plus the benchmark.json table the report reads its numbers from, so
report tests cover several use cases in milliseconds instead of several real pipelines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# the metric each use case leads with (conf/use_case/*.yaml)
METRICS = {
    "cv-classification": ("top1", "image_classifier"),
    "nlp-named_entity_recognition": ("entity_f1", "transformers"),
    "nlp-question_answering": ("f1", "transformers"),
    "cv-segmentation": ("mask_map50-95", "yolo"),
}


def make_sweep_root(path: Path) -> Path:
    """A folder Hydra's basic sweeper made: it writes multirun.yaml at the sweep root."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    return path


def fake_run(
    run_dir: Path,
    use_case: str,
    data: str,
    level: float,
    accuracy: float | None,
    latency_ms: float | None,
    dense: tuple[float, float] = (90.0, 10.0),
    failed: str | None = None,
    model_arch: str = "resnet18",
) -> Path:
    """A run dir of `use_case` on data folder `data` at `level`: done with `accuracy` and
    `latency_ms` against the `dense` (accuracy, latency) baseline, or failed with `failed`."""
    metric, family = METRICS[use_case]
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "use_case": {"name": use_case, "metric": metric, "family": family},
        "experiment": {"name": "one_shot"},
        "optim_level": level,
        "data": {"path": f"/datasets/{data}"},
        "model": {"path": None, "arch": model_arch},
        "quantization": {"format": "qoperator"},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    stages: dict[str, Any] = {
        "validate": {"status": "done", "outputs": {"optim_level": level, "artifacts": []}}
    }
    if failed is not None:
        (run_dir / "FAILED").write_text(failed + "\n")
        manifest = {"status": "failed", "stages": stages}
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        return run_dir
    quant = {"format": "qoperator"} if level > 0 else None
    stages["sparsify"] = {"status": "done", "outputs": {"sparsity": level, "quantization": quant}}
    stages["benchmark"] = {"status": "done", "outputs": {}}
    (run_dir / "manifest.json").write_text(json.dumps({"status": "done", "stages": stages}))
    base_acc, base_lat = dense

    def row(model: str, acc: float | None, lat: float | None, sparsity: float) -> dict[str, Any]:
        return {
            "engine": "onnxruntime",
            "model": model,
            "metric": metric,
            "accuracy": acc,
            "latency_ms_b1": lat,
            "items_per_sec_b4": None if lat is None else round(4000 / lat, 1),
            "speedup_b4": None if lat is None else round(base_lat / lat, 3),
            "size_mb": round(40 * (1 - sparsity / 2), 2),
            "sparsity": sparsity,
        }

    table = [
        row("baseline", base_acc, base_lat, 0.0),
        row("sparsified", accuracy, latency_ms, level),
    ]
    report = {"engines": {"onnxruntime": {"baseline": {}, "sparsified": {}}}, "table": table}
    (run_dir / "benchmark").mkdir(exist_ok=True)
    (run_dir / "benchmark" / "benchmark.json").write_text(json.dumps(report))
    return run_dir
