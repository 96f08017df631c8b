"""fetch: bring the model into the run dir (the user's checkpoint, or a dense baseline
trained once on the user's data and cached)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.context import RunContext
from sparsify.models import get_family


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _baseline_key(ctx: RunContext) -> str:
    """Same data, arch, training settings and seed -> same cached baseline."""
    from sparsify.stages.engine import path_fingerprint

    blob = json.dumps(
        {
            "data": path_fingerprint(ctx.outputs["validate"]["data_path"]),
            "data_cfg": OmegaConf.to_container(ctx.cfg.data, resolve=True),
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
        out_dir = ctx.stage_dir(self.name)
        target = out_dir / "model.pth"
        info: dict[str, Any] = {}
        if ctx.cfg.model.path:
            source = Path(str(ctx.cfg.model.path)).expanduser().resolve()
            ctx.log.info("Loading model <%s> from %s", ctx.cfg.model.arch, source)
            shutil.copyfile(source, target)
            info["source"] = str(source)
        else:
            cached = ctx.cache_dir / "baselines" / f"{ctx.cfg.model.arch}-{_baseline_key(ctx)}.pth"
            meta = cached.with_suffix(".json")
            if cached.exists() and meta.exists():
                ctx.log.info("Using the cached dense baseline %s", cached)
                info["baseline"] = json.loads(meta.read_text())
            else:
                info["baseline"] = family.train_baseline(ctx, cached)
                meta.write_text(json.dumps(info["baseline"], indent=2))
            shutil.copyfile(cached, target)
            info["source"] = f"trained baseline (cached at {cached})"
        info["sha256"] = sha256_file(target)
        info["artifacts"] = [ctx.rel(target)]
        return info
