"""fetch: bring the dense model into the run dir: the user's model as it is, or, when none
was given or its head does not fit the data, a baseline fine-tuned once on the user's
train split (cached under cache_dir/baselines)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.context import RunContext
from sparsify.models import get_family
from sparsify.stages.engine import path_fingerprint


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of every file (name + content) in a folder."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def _baseline_key(ctx: RunContext, source: Path | None) -> str:
    """Same data, starting model, arch, training settings and seed -> same cached baseline."""
    blob = json.dumps(
        {
            "data": path_fingerprint(ctx.outputs["validate"]["data_path"]),
            "data_cfg": OmegaConf.to_container(ctx.cfg.data, resolve=True),
            "source": path_fingerprint(str(source) if source else None),
            "arch": str(ctx.cfg.model.arch),
            "train": OmegaConf.to_container(ctx.cfg.experiment.train, resolve=True),
            "seed": int(ctx.cfg.seed),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FetchStage:
    name = "fetch"
    config_keys = ("model", "use_case", "experiment", "data", "seed")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        family = get_family(str(ctx.cfg.use_case.family))
        target = ctx.stage_dir(self.name) / family.artifact_name
        source = family.resolve_source(ctx)
        info: dict[str, Any] = {}
        if source is not None and not family.needs_baseline(ctx, source):
            ctx.log.info("Loading model <%s> from %s", ctx.cfg.model.arch, source)
            _copy(source, target)
            info["source"] = str(source)
        else:
            name = f"{family.name}-{ctx.cfg.model.arch}-{_baseline_key(ctx, source)}"
            cached = ctx.cache_dir / "baselines" / name / family.artifact_name
            meta = cached.parent / "baseline.json"
            if cached.exists() and meta.exists():
                ctx.log.info("Using the cached dense baseline %s", cached)
                info["baseline"] = json.loads(meta.read_text())
            else:
                if cached.parent.exists():  # an interrupted earlier attempt
                    shutil.rmtree(cached.parent)
                cached.parent.mkdir(parents=True)
                info["baseline"] = family.train_baseline(ctx, source, cached)
                meta.write_text(json.dumps(info["baseline"], indent=2))
            _copy(cached, target)
            origin = str(source) if source else f"a new {ctx.cfg.model.arch}"
            info["source"] = f"{origin}, prepared here as the dense baseline (cached at {cached})"
        info["sha256"] = sha256_path(target)
        info["artifacts"] = [ctx.rel(target)]
        return info
