"""The dense-vs-result comparison printed at the end of a run."""

from __future__ import annotations

from typing import Any


def _median_ms(model: dict[str, Any], batch: int) -> float | None:
    for run in model["benchmarks"]:
        if run["batch_size"] == batch:
            return float(run["benchmark_result"]["median"])
    return None


def _throughput(model: dict[str, Any], batch: int) -> float | None:
    for run in model["benchmarks"]:
        if run["batch_size"] == batch:
            return float(run["benchmark_result"]["items_per_sec"])
    return None


def comparison(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per engine and model: accuracy, latency, throughput, speedup, size, sparsity."""
    rows = []
    for engine, models in report["engines"].items():
        base = models["baseline"]
        batches = sorted(r["batch_size"] for r in base["benchmarks"])
        small, large = batches[0], batches[-1]
        for name, model in models.items():
            acc = model.get("accuracy") or {}
            metric = next((k for k in acc if k != "samples"), None)
            base_tp, tp = _throughput(base, large), _throughput(model, large)
            rows.append(
                {
                    "engine": engine,
                    "model": name,
                    "accuracy": round(acc[metric], 3) if metric else None,
                    "metric": metric,
                    f"latency_ms_b{small}": round(_median_ms(model, small), 3),
                    f"items_per_sec_b{large}": round(tp, 1),
                    f"speedup_b{large}": round(tp / base_tp, 3) if base_tp else None,
                    "size_mb": model["size_mb"],
                    "sparsity": round(model["sparsity"], 4),
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no benchmark results)"
    headers = list(rows[0])
    cells = [[("" if r.get(h) is None else str(r.get(h))) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, sep, *body])
