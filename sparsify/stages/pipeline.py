"""Runs the stages in order, skipping those whose inputs did not change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify import distributed
from sparsify.config.schema import STAGE_NAMES
from sparsify.context import RunContext
from sparsify.errors import SparsifyError
from sparsify.stages.base import STAGES, Stage
from sparsify.stages.manifest import Manifest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def path_fingerprint(path: str | None) -> str:
    """Cheap fingerprint of a file or folder: names, sizes and mtimes (no content reads)."""
    if not path:
        return "none"
    root = Path(path).expanduser()
    if not root.exists():
        return "missing"
    h = hashlib.sha256()
    entries = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in entries:
        st = p.stat()
        h.update(f"{p.relative_to(root.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _stage_fingerprint(ctx: RunContext, keys: tuple[str, ...], upstream: str, external: str) -> str:
    selected = {
        k: OmegaConf.to_container(ctx.cfg[k], resolve=True)
        if OmegaConf.is_config(ctx.cfg[k])
        else ctx.cfg[k]
        for k in keys
    }
    blob = json.dumps(
        {"config": selected, "upstream": upstream, "external": external},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _chain(upstream: str, outputs: dict[str, Any]) -> str:
    """What later stages depend on: the *outputs* of the earlier ones, so a stage that re-ran
    and produced the same thing does not invalidate what comes after it."""
    blob = upstream + json.dumps(outputs, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _finished(ctx: RunContext, stage: Stage, record: dict[str, Any] | None) -> bool:
    """Done earlier, and every file it made is still there."""
    if not record or record.get("status") != "done":
        return False
    output = stage.output.from_dict(record.get("outputs"))
    return all((ctx.run_dir / a).exists() for a in output.artifacts)


def _use(ctx: RunContext, stage: Stage, outputs: dict[str, Any], upstream: str) -> str:
    """Hand a stage's outputs (made now or earlier) to the later stages: in `ctx.outputs`,
    and the config values it settled (e.g. fetch: the zoo model's architecture). Returns the
    new upstream chain."""
    ctx.outputs[stage.name] = outputs
    for key, value in (stage.output.from_dict(outputs).config_overrides or {}).items():
        OmegaConf.update(ctx.cfg, key, value, merge=False)
    return _chain(upstream, outputs)


def run_pipeline(ctx: RunContext) -> Manifest:
    """Run the selected stages of `ctx.cfg.stages` in pipeline order."""
    manifest = Manifest(ctx.run_dir)
    selected = list(ctx.cfg.stages)
    unknown = [s for s in selected if s not in STAGE_NAMES]
    if unknown:
        raise SparsifyError(f"unknown stage(s) {unknown} in `stages`; the stages are {STAGE_NAMES}")
    explicit = selected != STAGE_NAMES
    external = path_fingerprint(ctx.cfg.data.path) + path_fingerprint(ctx.cfg.model.path)
    last_selected = max(STAGE_NAMES.index(s) for s in selected) if selected else -1
    upstream = ""
    for index, name in enumerate(STAGE_NAMES):
        if index > last_selected:
            break
        stage = STAGES.get(name)
        fingerprint = _stage_fingerprint(ctx, stage.config_keys, upstream, external)
        record = manifest.stage(name)
        finished = _finished(ctx, stage, record)
        if name not in selected:
            if not finished:
                raise SparsifyError(
                    f"stage {name!r} has not finished in {ctx.run_dir}, and the stages you asked "
                    f"for ({', '.join(selected)}) need its results; add it to `stages` or run all stages"
                )
            if record["fingerprint"] != fingerprint:
                ctx.log.warning(
                    "Using %s results made with different inputs than this config", name
                )
            upstream = _use(ctx, stage, record["outputs"], upstream)
            continue
        if finished and not explicit and record["fingerprint"] == fingerprint:
            ctx.log.info("Stage %s: finished earlier with the same inputs, skipped", name)
            upstream = _use(ctx, stage, record["outputs"], upstream)
            continue
        if name == "sparsify" and distributed.active():
            _start_followers(ctx)
        upstream = _use(ctx, stage, _run_stage(ctx, manifest, stage, fingerprint), upstream)
    return manifest


def _start_followers(ctx: RunContext) -> None:
    """Rank 0 before the sparsify stage: the other ranks get its config and the outputs of
    validate and fetch to train alongside it, or are told there is no training to share."""
    from sparsify.algorithms.session import has_training
    from sparsify.context import load_run_recipe

    distributed.set_failure_dir(ctx.run_dir)
    message: dict[str, Any] = {"run_dir": str(ctx.run_dir)}
    if has_training(load_run_recipe(ctx)):
        message["cfg"] = OmegaConf.to_container(ctx.cfg, resolve=True)
        message["outputs"] = ctx.outputs
        ctx.log.info("Training across %d processes (this is rank 0)", distributed.world_size())
    else:
        message["stop"] = "this experiment does not train"
        ctx.log.info("No training in this run: ranks 1..%d stay idle", distributed.world_size() - 1)
    distributed.share(message)


def follow_training(ctx: RunContext) -> None:
    """A rank other than 0: the sparsify stage's training, on the model rank 0 trains (the
    fetched dense model, or the sparse-transfer foundation), and nothing else."""
    from sparsify.context import load_run_recipe
    from sparsify.models import get_family
    from sparsify.outputs import FetchOutput
    from sparsify.stages.sparsify_stage import _quantization, _train

    family = get_family(str(ctx.cfg.use_case.family))
    fetched = ctx.output(FetchOutput)
    model = family.load(ctx.artifact(fetched.model), ctx)
    if fetched.foundation:
        model = family.load_for_transfer(ctx.artifact(fetched.foundation), ctx)
    recipe = load_run_recipe(ctx)
    scratch = distributed.rank_dir(ctx.run_dir) / "model.onnx"  # never written by a follower
    quantize = _quantization(recipe, ctx) is not None
    _train(model, recipe, family, ctx, {}, [], list(family.prune_ignore), scratch, quantize)


def _run_stage(
    ctx: RunContext, manifest: Manifest, stage: Stage, fingerprint: str
) -> dict[str, Any]:
    """Run one stage in an emptied `run_dir/<out_dir>`; its outputs in manifest form."""
    out_dir = ctx.run_dir / stage.out_dir
    if out_dir.exists():  # leftovers of an interrupted or outdated attempt
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "status": "running",
        "started_at": _now(),
        "fingerprint": fingerprint,
        "pid": os.getpid(),
    }
    manifest.update_stage(stage.name, record)
    ctx.log.info("Stage %s: running", stage.name)
    try:
        outputs = stage.run(ctx).to_dict()
    except BaseException as exc:  # Ctrl-C included: the manifest must say what happened
        # a broken collective under torchrun: say which rank failed, where it left word
        failure = distributed.rank_failure(exc) if distributed.collective_failed(exc) else None
        shown = failure or exc
        record.update(
            status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
            duration_s=round(time.perf_counter() - started, 3),
            error=f"{type(shown).__name__}: {shown}",
        )
        manifest.update_stage(stage.name, record)
        if failure is not None:
            raise failure from exc
        raise
    record.update(
        status="done",
        duration_s=round(time.perf_counter() - started, 3),
        finished_at=_now(),
        outputs=outputs,
    )
    record.pop("pid", None)
    manifest.update_stage(stage.name, record)
    ctx.log.info("Stage %s: done in %.1f s", stage.name, record["duration_s"])
    return outputs
