"""Read finished (or failed) runs back from their run directories into report rows."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.benchmark.table import comparison
from sparsify.engines.host import benchmark_host, describe_host
from sparsify.outputs import SparsifyOutput, ValidateOutput
from sparsify.recipes.levels import derive
from sparsify.run_record import CONFIG, FAILED, HYDRA_CONFIG, MANIFEST, RunRecord

# A directory is a run when it holds one of these (Hydra's own `.hydra/` alone means a job
# that started and died before the pipeline wrote anything: reported as incomplete).
RUN_MARKERS = (MANIFEST, FAILED, CONFIG)
SKIP_DIRS = {"deployment", "fetch", "sparsify", "benchmark", "package", "validate", ".hydra"}


@dataclass
class RunRow:
    """One job of a sweep: what was asked, how it ended, and the result against its baseline."""

    run_dir: str
    job: int | None = None
    use_case: str | None = None
    experiment: str | None = None
    level: float | None = None
    status: str = "incomplete"  # done | failed | incomplete
    sparsity: float | None = None
    quantization: str | None = None
    metric: str | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    latency_ms: float | None = None
    baseline_latency_ms: float | None = None
    latency_batch: int | None = None
    throughput: float | None = None
    throughput_batch: int | None = None
    speedup: float | None = None
    size_mb: float | None = None
    baseline_size_mb: float | None = None
    pareto: bool = False
    error: str | None = None
    host: str | None = None  # CPU, its INT8/BF16 flags and usable CPUs the run was timed on

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = list(RunRow.__dataclass_fields__)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (
        any((path / m).is_file() for m in RUN_MARKERS) or (path / HYDRA_CONFIG).is_file()
    )


def find_run_dirs(root: Path) -> list[Path]:
    """`root` itself when it is a run, else every run below it (a sweep, or a tree of sweeps)."""
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    stack = [root]
    while stack:
        here = stack.pop()
        for child in sorted(p for p in here.iterdir() if p.is_dir()):
            if child.name in SKIP_DIRS:
                continue
            if is_run_dir(child):
                found.append(child)
            else:
                stack.append(child)
    return sorted(found, key=_sort_key)


def _job_number(path: Path) -> int | None:
    match = re.match(r"(\d+)_", path.name)
    return int(match.group(1)) if match else None


def _sort_key(path: Path) -> tuple[str, int, str]:
    num = _job_number(path)
    return (str(path.parent), -1 if num is None else num, path.name)


def _prefixed(row: dict[str, Any], prefix: str) -> tuple[float | None, int | None]:
    """The value of `<prefix><batch>` in a comparison row, and that batch size."""
    for key, value in row.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            return value, int(key[len(prefix) :])
    return None, None


def _benchmark_rows(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(baseline, result) rows of the first engine, as printed at the end of the run."""
    rows = report.get("table") or comparison(report)
    by_model = {}
    for row in rows:
        by_model.setdefault(row.get("model"), row)
    if "baseline" not in by_model or "sparsified" not in by_model:
        return None
    return by_model["baseline"], by_model["sparsified"]


def _fill_config(row: RunRow, record: RunRecord) -> None:
    cfg = record.config
    row.use_case = (cfg.get("use_case") or {}).get("name")
    row.experiment = (cfg.get("experiment") or {}).get("name")
    row.level = level = record.level
    if level is None or not isinstance(cfg.get("experiment"), dict):
        return
    # what the run was asked for, shown also when it failed before the sparsify stage
    try:
        planned = derive(OmegaConf.create(cfg["experiment"]), level)
    except Exception:  # an old or hand-edited config: the report still shows the rest
        return
    row.sparsity = round(float(planned.sparsity), 4)
    fmt = (cfg.get("quantization") or {}).get("format", "?")
    row.quantization = f"int8 ({fmt})" if planned.quantize else "none"


def _fill_outputs(row: RunRow, record: RunRecord) -> None:
    """What the stages recorded overrides the plan read from the config."""
    validated = record.output(ValidateOutput) or ValidateOutput()
    derived = validated.derived or {}
    produced = record.output(SparsifyOutput)
    if produced is not None and produced.quantization:
        row.quantization = f"int8 ({produced.quantization.get('format', '?')})"
    elif "quantize" in derived:
        fmt = (record.config.get("quantization") or {}).get("format", "?")
        row.quantization = f"int8 ({fmt})" if derived["quantize"] else "none"
    target = produced.sparsity if produced is not None else derived.get("sparsity")
    if target is not None:
        row.sparsity = round(float(target), 4)


def _fill_benchmark(row: RunRow, report: dict[str, Any]) -> None:
    rows = _benchmark_rows(report)
    if rows is None:
        return
    base, result = rows
    row.metric = result.get("metric")
    row.accuracy = result.get("accuracy")
    row.baseline_accuracy = base.get("accuracy")
    row.latency_ms, row.latency_batch = _prefixed(result, "latency_ms_b")
    row.baseline_latency_ms, _ = _prefixed(base, "latency_ms_b")
    row.throughput, row.throughput_batch = _prefixed(result, "items_per_sec_b")
    row.speedup, _ = _prefixed(result, "speedup_b")
    row.size_mb = result.get("size_mb")
    row.baseline_size_mb = base.get("size_mb")
    host = benchmark_host(report)
    row.host = describe_host(host) if host else None
    if result.get("sparsity") is not None:  # measured in the exported file
        row.sparsity = round(float(result["sparsity"]), 4)


def read_run(run_dir: Path) -> RunRow:
    """Everything the report shows about one run; never raises for a broken run directory."""
    row = RunRow(run_dir=str(run_dir), job=_job_number(run_dir))
    record = RunRecord.load(run_dir)
    _fill_config(row, record)
    if record.manifest:
        _fill_outputs(row, record)
    if record.failed_marker is not None or record.status == "failed":
        row.status = "failed"
        row.error = record.error() or "failed (no error recorded)"
    elif record.status == "done":
        row.status = "done"
    else:
        row.error = record.error() or f"did not finish (no status in {MANIFEST})"
    report = record.benchmark()
    if report and report.get("engines"):
        try:
            _fill_benchmark(row, report)
        except (KeyError, TypeError, ValueError) as exc:
            row.error = f"unreadable {record.benchmark_path.name}: {type(exc).__name__}: {exc}"
    return row


def collect(root: Path) -> list[RunRow]:
    return [read_run(d) for d in find_run_dirs(root)]
