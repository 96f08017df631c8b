"""Read finished (or failed) runs back from their run directories into report rows.

`row_from_record(RunRecord.load(run_dir))` is the one way a run becomes a report row: the
sweep report calls it through `collect`, and a sweeper that writes its own table of trials
(the accuracy-budget sweeper's `trials.csv`) calls it too, so its trials read the same.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.benchmark.table import comparison
from sparsify.config.metrics import resolve_metric
from sparsify.engines.host import benchmark_host, describe_host
from sparsify.outputs import SparsifyOutput, ValidateOutput
from sparsify.recipes.levels import derive
from sparsify.run_record import CONFIG, FAILED, HYDRA_CONFIG, MANIFEST, RunRecord

# A directory is a run when it holds one of these (Hydra's own `.hydra/` alone means a job
# that started and died before the pipeline wrote anything: reported as incomplete).
RUN_MARKERS = (MANIFEST, FAILED, CONFIG)
SKIP_DIRS = {"deployment", "fetch", "sparsify", "benchmark", "package", "validate", ".hydra"}
# The accuracy-budget sweeper's root holds trials.csv and `best/`, a copy of the best trial:
# the trial itself is already a row, so `best/` there is not read as another run.
TRIALS = "trials.csv"
BUDGET_BEST = "best"
SWEEP_MARKER = "multirun.yaml"  # Hydra's sweepers write it at the sweep root


@dataclass
class RunRow:
    """One job of a sweep: what was asked, how it ended, and the result against its baseline."""

    run_dir: str
    run: str | None = None  # the sweep job's name, else the run dir relative to the report root
    job: int | None = None
    use_case: str | None = None
    data: str | None = None  # the data folder's name (or the built-in demo data set's)
    model: str | None = None  # the checkpoint's file name, else the architecture trained
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
            if child.name in SKIP_DIRS or _budget_best(child):
                continue
            if is_run_dir(child):
                found.append(child)
            else:
                stack.append(child)
    return sorted(found, key=_sort_key)


def _budget_best(path: Path) -> bool:
    return path.name == BUDGET_BEST and (path.parent / TRIALS).is_file()


def is_sweep_job(run_dir: Path) -> bool:
    """Whether Hydra made this run dir as one job of a sweep (a multirun)."""
    hydra = run_dir / HYDRA_CONFIG.parent / "hydra.yaml"
    if hydra.is_file():
        mode = OmegaConf.select(_load_yaml(hydra), "hydra.mode")
        if mode is not None:
            return str(mode).endswith("MULTIRUN")
    return any((run_dir.parent / m).is_file() for m in (SWEEP_MARKER, TRIALS))


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.load(path)
    except Exception:  # a torn or hand-edited file: the name falls back to the path
        return OmegaConf.create()


def run_name(run_dir: Path, root: Path | None = None) -> str:
    """What a reader calls the run: a sweep job's name (its folder, e.g.
    `3_cv-classification_one_shot_level-0.5`), else its path relative to `root`."""
    if is_sweep_job(run_dir) or root is None:
        return run_dir.name
    try:
        relative = run_dir.resolve().relative_to(root.resolve())
    except ValueError:
        return str(run_dir)
    return relative.as_posix() if relative.parts else run_dir.name


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
    use_case = cfg.get("use_case") or {}
    row.use_case = use_case.get("name")
    row.data, row.model = _data_name(cfg), _model_name(cfg)
    row.metric = _planned_metric(cfg)
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


def _name(path: object) -> str | None:
    text = str(path or "").strip().rstrip("/\\")
    return Path(text).name or text or None


def _data_name(cfg: dict[str, Any]) -> str | None:
    data = cfg.get("data") or {}
    return _name(data.get("path")) or data.get("demo")


def _model_name(cfg: dict[str, Any]) -> str | None:
    model = cfg.get("model") or {}
    return _name(model.get("path")) or model.get("arch")


def _planned_metric(cfg: dict[str, Any]) -> str | None:
    """The metric the run is measured by, as the benchmark would pick it: a run that never
    got there still belongs with its use case's table."""
    use_case = cfg.get("use_case") or {}
    default = use_case.get("metric")
    if not use_case.get("name") or not default:
        return None
    asked = (cfg.get("benchmark") or {}).get("metric")
    metric, _ = resolve_metric(asked, use_case["name"], str(use_case.get("family")), default)
    return metric


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
    row.metric = result.get("metric") or row.metric
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


def row_from_record(record: RunRecord, run: str | None = None) -> RunRow:
    """Everything the report shows about one run (`run`: its name in the report, default the
    run dir's name); never raises for a broken run directory."""
    run_dir = record.run_dir
    row = RunRow(run_dir=str(run_dir), run=run or run_dir.name, job=_job_number(run_dir))
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


def read_run(run_dir: Path, root: Path | None = None) -> RunRow:
    return row_from_record(RunRecord.load(run_dir), run_name(run_dir, root))


def collect(root: Path) -> list[RunRow]:
    rows = [read_run(d, root) for d in find_run_dirs(root)]
    # two sweeps under one root both have a job 0: their paths tell them apart
    names = [r.run for r in rows]
    for row in rows:
        if names.count(row.run) > 1:
            row.run = run_name(Path(row.run_dir).parent, root) + "/" + Path(row.run_dir).name
    return rows
