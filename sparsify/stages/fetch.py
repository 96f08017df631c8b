"""fetch: bring the dense model into the run dir: the user's model as it is, or, when none
was given or its head does not fit the data, a baseline fine-tuned once on the user's
train split (cached under cache_dir/baselines). Then the dense model is measured on val and
checked against a trivial predictor before anything is sparsified (sparsify/baseline.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.algorithms.pruning import overall_sparsity, select_layers
from sparsify.baseline import (
    check_baseline,
    check_gate_mode,
    measure_dense,
    small_val_note,
    trivial_score,
)
from sparsify.context import RunContext
from sparsify.models import get_family
from sparsify.outputs import FetchOutput, ValidateOutput
from sparsify.run_lock import build_lock
from sparsify.stages.pipeline import path_fingerprint
from sparsify.zoo.checksum import sha256_path


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def _baseline_key(ctx: RunContext, source: Path | None) -> str:
    """Same data, starting model, arch, training settings and seed -> same cached baseline."""
    blob = json.dumps(
        {
            "data": path_fingerprint(ctx.output(ValidateOutput).data_path),
            "data_cfg": OmegaConf.to_container(ctx.cfg.data, resolve=True),
            "source": path_fingerprint(str(source) if source else None),
            "arch": str(ctx.cfg.model.arch),
            "train": OmegaConf.to_container(ctx.cfg.experiment.train, resolve=True),
            "schedule": {
                k: ctx.cfg.baseline[k]
                for k in ("min_steps", "max_epochs", "step_budget", "patience")
            },
            "seed": int(ctx.cfg.seed),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dense_baseline(
    ctx: RunContext, family: Any, source: Path | None, target: Path
) -> tuple[dict[str, Any], str]:
    """A dense model fine-tuned once on the train split (from `source`, or from scratch),
    cached under cache_dir/baselines, copied to `target`. Returns (its training stats,
    where it came from in words)."""
    name = f"{family.name}-{ctx.cfg.model.arch}-{_baseline_key(ctx, source)}"
    cached = ctx.cache_dir / "baselines" / name / family.artifact_name
    meta = cached.parent / "baseline.json"
    lock = cached.parent.parent / f"{name}.lock"
    with build_lock(lock, f"the dense baseline {name}", ctx.log):
        if cached.exists() and meta.exists():
            ctx.log.info("Using the cached dense baseline %s", cached)
            baseline = json.loads(meta.read_text())
        else:
            if cached.parent.exists():  # an interrupted earlier attempt (no one holds the lock)
                shutil.rmtree(cached.parent)
            cached.parent.mkdir(parents=True)
            baseline = family.train_baseline(ctx, source, cached)
            meta.write_text(json.dumps(baseline, indent=2))
    _copy(cached, target)
    origin = str(source) if source else f"a new {ctx.cfg.model.arch}"
    return baseline, f"{origin}, prepared here as the dense baseline (cached at {cached})"


def _foundation(
    ctx: RunContext, family: Any, source: Path | None
) -> tuple[Path, dict[str, Any], Any]:
    """Sparse transfer's starting model: the user's `model=` or the zoo's pick for the level
    (then also the ZooModel, which copies itself verified by sha256)."""
    from sparsify.zoo.first_use import from_model, resolve_or_build

    # a missing pruned tier is built on first use from a dense model (docs/zoo.md)
    found = from_model(ctx, family, source) if source is not None else resolve_or_build(ctx)
    if found is None:  # model.path is the foundation as it is
        return source, {"name": str(source), "source": "model.path"}, None
    derived = ctx.derived
    entry = dict(found.entry)
    arch = entry.get("arch")
    if arch and str(arch) != str(ctx.cfg.model.arch):
        ctx.log.info("Zoo model %s is a %s: model.arch set to it", entry.get("name"), arch)
        OmegaConf.update(ctx.cfg, "model.arch", str(arch), merge=False)
    ctx.log.info(
        "Zoo: %s (tier %s, %s) from %s",
        entry.get("name"),
        derived.tier,
        derived.variant,
        found.path,
    )
    return found.path, {**entry, "sha256": found.sha256}, found


def _measured(ctx: RunContext, family: Any, target: Path, output: FetchOutput) -> dict[str, Any]:
    """The dense model's val metrics (`measure_dense`), cached by model content and data: a
    sweep over optim levels measures its shared baseline once."""
    blob = json.dumps(
        {
            "model": output.sha256,
            "data": path_fingerprint(ctx.output(ValidateOutput).data_path),
            "data_cfg": OmegaConf.to_container(ctx.cfg.data, resolve=True),
            "use_case": OmegaConf.to_container(ctx.cfg.use_case, resolve=True),
        },
        sort_keys=True,
    )
    cached = (
        ctx.cache_dir
        / "baselines"
        / "measured"
        / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    )
    if cached.is_file():
        ctx.log.info("Dense baseline's val metrics: cached in %s", cached)
        return json.loads(cached.read_text())
    # the family reads the dense model's files (a tokenizer) through fetch's output
    ctx.outputs[FetchOutput.stage] = output.to_dict()
    try:
        scores = measure_dense(ctx, family, target)
    finally:
        del ctx.outputs[FetchOutput.stage]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(scores, indent=2))
    return scores


def _check(ctx: RunContext, family: Any, target: Path, output: FetchOutput) -> FetchOutput:
    """Say how good the dense baseline is before sparsifying it, and stop (baseline.gate=error)
    when it is no better than a trivial predictor; warn when val is too small to resolve a
    1-point change."""
    trivial = trivial_score(ctx)
    if trivial is None:  # a custom use case: no metric to compare
        return output
    note = small_val_note(trivial.items, str(ctx.cfg.use_case.task))
    if note:
        ctx.log.warning("Small validation split: %s (add val data for finer comparisons)", note)
    if check_gate_mode(ctx.cfg) == "off":
        ctx.log.info("baseline.gate=off: the dense baseline is not checked before sparsifying")
        return output
    result = check_baseline(ctx, _measured(ctx, family, target, output), trivial)
    output.extra["baseline_gate"] = result.to_dict()
    return output


class FetchStage:
    name = "fetch"
    out_dir = "fetch"
    output = FetchOutput
    # baseline: how the dense baseline is trained and checked (a stricter gate re-checks)
    config_keys = (
        "model",
        "use_case",
        "experiment",
        "data",
        "seed",
        "optim_level",
        "zoo",
        "baseline",
    )

    def run(self, ctx: RunContext) -> FetchOutput:
        check_gate_mode(ctx.cfg)  # a typo fails before any training
        family = get_family(str(ctx.cfg.use_case.family))
        target = ctx.stage_dir(self.out_dir) / family.artifact_name
        source = family.resolve_source(ctx)
        if str(ctx.cfg.experiment.name) == "sparse_transfer":
            return self._transfer(ctx, family, source, target)
        if source is not None and not family.needs_baseline(ctx, source):
            ctx.log.info("Loading model <%s> from %s", ctx.cfg.model.arch, source)
            _copy(source, target)
            baseline, origin = None, str(source)
        else:
            baseline, origin = _dense_baseline(ctx, family, source, target)
        output = FetchOutput(
            baseline=baseline,
            source=origin,
            sha256=sha256_path(target),
            artifacts=[ctx.rel(target)],
        )
        return _check(ctx, family, target, output)

    def _transfer(
        self, ctx: RunContext, family: Any, source: Path | None, target: Path
    ) -> FetchOutput:
        """The foundation model as it is (fetch/foundation*), and as the dense baseline to
        measure against, the same foundation fine-tuned on the data without sparsity."""
        path, entry, zoo_model = _foundation(ctx, family, source)
        suffix = Path(family.artifact_name).suffix
        foundation = target.with_name("foundation" + suffix)
        if zoo_model is not None:
            zoo_model.copy_to(foundation)
        else:
            _copy(path, foundation)
        from sparsify.zoo.first_use import narrowed_layers

        loaded = family.load_for_transfer(foundation, ctx)
        sparsity = overall_sparsity(select_layers(loaded))
        thin = bool((entry or {}).get("structured")) or bool(
            narrowed_layers(loaded, str(ctx.cfg.model.arch))
        )
        ctx.log.info(
            "Foundation model %s: %.2f %% sparse%s",
            path,
            100 * sparsity,
            ", channel-pruned (narrower layers)" if thin else "",
        )
        if sparsity < 0.3 and not thin and str(ctx.derived.variant) != "dense":
            ctx.log.warning(
                "The foundation model is only %.1f %% sparse (measured): sparse transfer holds "
                "its zeros fixed, so the result will be about as sparse; give a pruned model "
                "(e.g. one built with experiment=training_aware and `sparsify zoo add`)",
                100 * sparsity,
            )
        baseline, origin = _dense_baseline(ctx, family, path, target)
        output = FetchOutput(
            baseline=baseline,
            source=origin,
            foundation=ctx.rel(foundation),
            foundation_entry=entry,
            foundation_sparsity=sparsity,
            sha256=sha256_path(target),
            foundation_sha256=sha256_path(foundation),
            config_overrides={"model.arch": str(ctx.cfg.model.arch)},
            artifacts=[ctx.rel(target), ctx.rel(foundation)],
        )
        return _check(ctx, family, target, output)
