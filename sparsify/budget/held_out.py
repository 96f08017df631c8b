"""Honest selection: the chosen trial was picked on val, so when the data has a test split its
package and its dense baseline are measured again there, with the family's own evaluation.

The families evaluate "val"; rather than teach each one a split argument, the data folder is
mirrored with symlinks in which the test split stands where val was (`test/` -> `val/`,
`images/test` -> `images/val`, `test.csv` -> `val.csv`), and the chosen run's config points
there. Nothing is copied.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.budget.trials import TrialResult
from sparsify.outputs import SparsifyOutput
from sparsify.run_record import RunRecord

log = logging.getLogger("sparsify.budget")
_VAL = ("val", "validation")


def _split(name: str) -> str | None:
    stem = name.split(".", 1)[0].lower()
    return stem if stem in ("train", "test", *_VAL) else None


def _has_test(folder: Path, depth: int) -> bool:
    for entry in folder.iterdir():
        if _split(entry.name) == "test":
            return True
        if depth > 1 and entry.is_dir() and _has_test(entry, depth - 1):
            return True
    return False


def _suffix(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else ""


def _mirror(src: Path, dst: Path, depth: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    entries = list(src.iterdir())
    # test takes val's place under val's own name (validation.jsonl stays validation.jsonl:
    # the validate stage's summary may name the file)
    val_names = {_suffix(e.name): e.name for e in entries if _split(e.name) in _VAL}
    for entry in entries:
        split = _split(entry.name)
        if split in _VAL:
            continue
        if split == "test":
            os.symlink(entry.resolve(), dst / entry.name)
            suffix = _suffix(entry.name)
            alias = val_names.get(suffix) or ("val." + suffix if suffix else "val")
            os.symlink(entry.resolve(), dst / alias)
        elif depth > 1 and entry.is_dir() and _has_test(entry, 1):
            _mirror(entry, dst / entry.name, depth - 1)  # images/, labels/: one level down
        else:
            os.symlink(entry.resolve(), dst / entry.name)


def held_out_view(root: Path, dest: Path) -> Path | None:
    """`dest`, a view of `root` whose val is root's test split; None when there is no test."""
    if not root.is_dir() or not _has_test(root, 2):
        return None
    _mirror(root, dest, 2)
    return dest


def _score(family: Any, engine_name: str, model: Path, ctx: Any) -> dict[str, float]:
    from sparsify.engines.registry import load_engine

    engine = load_engine(engine_name, model, ctx.cfg.benchmark.get("num_threads"))
    try:
        return dict(family.evaluate_onnx(engine, ctx))
    finally:
        close = getattr(engine, "close", None)  # a worker engine holds a process
        if close is not None:
            close()


def measure_on_test(chosen: TrialResult | None, settings: dict[str, Any]) -> dict[str, Any] | None:
    """{value, dense, drop, samples} of the chosen package on test, a {note} saying why it was
    not measured, or None when the data has no test split."""
    if chosen is None or not chosen.run_dir:
        return None
    record = RunRecord.load(chosen.run_dir)
    data_path = (record.config.get("data") or {}).get("path")
    if not data_path or not Path(str(data_path)).is_dir():
        return None
    produced = record.output(SparsifyOutput)
    package = record.outputs.get("package") or {}
    deployment = Path(str(package.get("deployment_dir") or Path(chosen.run_dir) / "deployment"))
    model = deployment / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="sparsify-test-view-") as tmp:
        view = held_out_view(Path(str(data_path)), Path(tmp) / "data")
        if view is None:
            return None
        if produced is None or not produced.baseline_onnx or not model.is_file():
            return {"note": "not measured: the chosen run has no dense ONNX or no model.onnx"}
        try:
            return _measure(
                record, view, model, Path(chosen.run_dir) / produced.baseline_onnx, settings
            )
        except Exception as exc:  # the test split may lack labels, or differ from val
            log.warning(
                "Could not measure the chosen package on test: %s: %s", type(exc).__name__, exc
            )
            return {"note": f"not measured: {type(exc).__name__}: {exc}"}


def _measure(
    record: RunRecord, view: Path, model: Path, dense: Path, settings: dict[str, Any]
) -> dict[str, Any]:
    from sparsify.context import RunContext
    from sparsify.models import get_family

    cfg = OmegaConf.create(record.config)
    cfg.data.path = str(view)
    for key in ("val_samples", "max_eval_samples"):  # the whole test split
        if key in cfg.data:
            cfg.data[key] = None
    outputs = copy.deepcopy(record.outputs)
    outputs["validate"]["data_path"] = str(view)  # what the families read the data from
    ctx = RunContext(cfg=cfg, run_dir=Path(record.run_dir), outputs=outputs)
    family = get_family(str(cfg.use_case.family))
    metric, engine = str(settings["metric"]), str(settings["engine"])
    mine = _score(family, engine, model, ctx)
    base = _score(family, engine, dense, ctx)
    value, dense_value = float(mine[metric]), float(base[metric])
    log.info("On test: %s %.4g vs dense %.4g", metric, value, dense_value)
    return {
        "split": "test",
        "metric": metric,
        "value": round(value, 4),
        "dense": round(dense_value, 4),
        "drop": round(dense_value - value, 4),
        "samples": int(mine.get("samples") or 0),
    }
