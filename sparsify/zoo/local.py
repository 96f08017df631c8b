"""The local zoo dir: one folder per model, `NAME/zoo.json` (its catalog entry) beside the
checkpoint file or folder it names in `artifact`. Written by `sparsify zoo add` (from a
finished run) and scripts/build_zoo.py; users may also put a folder there by hand."""

from __future__ import annotations

import json
import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparsify.errors import Problem, SparsifyError
from sparsify.fileio import atomic_write_json, temp_dir
from sparsify.outputs import FetchOutput, SparsifyOutput, ValidateOutput
from sparsify.run_record import CONFIG, MANIFEST, RunRecord
from sparsify.zoo.catalog import (
    ENTRY_SCHEMA,
    TIERS,
    VARIANTS,
    entry_problems,
    family_error,
    use_case_family,
)
from sparsify.zoo.checksum import sha256_path

log = logging.getLogger("sparsify")
META = "zoo.json"
# the names `zoo add` accepts: the catalog schema's, so a name can never be a path
NAME_PATTERN = str(ENTRY_SCHEMA["properties"]["name"]["pattern"])


def check_name(name: str) -> str:
    """`name` if it is a zoo model name; a path ('../x', '/tmp/x', 'a/b') is refused."""
    # fullmatch: the schema's `$` (re.search) would also let a trailing newline through
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise SparsifyError(
            f"{name!r} is not a zoo model name: names are letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (what `sparsify zoo add --name` takes), never a "
            "path; `sparsify zoo list` shows the names"
        )
    return name


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, symlinks resolved, lies strictly inside `root` (resolved)."""
    real, top = path.resolve(), root.resolve()
    return real != top and real.is_relative_to(top)


def _delete(folder: Path) -> None:
    # a link (checked to point inside the zoo) goes, not what it points to
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder)


class LocalZoo:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.problems: list[Problem] = []  # entries that were skipped, and why

    def entries(self) -> list[dict[str, Any]]:
        """The valid entries, by name; broken ones are skipped and kept in `problems`."""
        self.problems = []
        found = []
        metas = sorted(self.root.glob(f"*/{META}")) if self.root.is_dir() else []
        # `.NAME.xxxx` folders are copies in progress; `_sparsezoo` holds downloads
        for meta in [m for m in metas if not m.parent.name.startswith((".", "_"))]:
            where = str(meta)
            try:
                entry = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                self.problems.append(
                    Problem(where, "", f"is not readable JSON ({exc})", "fix or remove it")
                )
                continue
            problems = entry_problems(entry, where)
            if not problems and entry["name"] != meta.parent.name:
                problems.append(
                    Problem(
                        f"{where}.name",
                        entry["name"],
                        f"differs from its folder name {meta.parent.name!r}",
                        "rename the folder or the entry so they match",
                    )
                )
            if not problems and not _inside(meta.parent, self.root):
                problems.append(
                    Problem(
                        where,
                        str(meta.parent.resolve()),
                        "is a link to a folder outside the zoo dir",
                        "remove the link, or copy the model in with `sparsify zoo add`",
                    )
                )
            artifact = meta.parent / str(entry.get("artifact", "")) if not problems else None
            if artifact is not None and artifact.exists() and not _inside(artifact, meta.parent):
                problems.append(
                    Problem(
                        f"{where}.artifact",
                        entry.get("artifact"),
                        "points outside its folder",
                        "name a file or folder beside zoo.json",
                    )
                )
            if not problems and not (meta.parent / entry.get("artifact", "")).exists():
                problems.append(
                    Problem(
                        f"{where}.artifact",
                        entry.get("artifact"),
                        "names no file or folder beside zoo.json",
                        "put the checkpoint there, or `sparsify zoo remove` the entry",
                    )
                )
            if problems:
                self.problems.extend(problems)
                for problem in problems:
                    log.warning("Skipping a broken local zoo entry: %s", problem)
                continue
            found.append(entry)
        return found

    def folder(self, name: str) -> Path:
        """The folder of model `name`; refused unless it resolves inside the zoo dir."""
        folder = self.root / check_name(name)
        if folder.is_symlink() and not _inside(folder, self.root):
            raise SparsifyError(
                f"{folder} is a link to {folder.resolve()}, outside the zoo dir "
                f"{self.root}; sparsify will not use or delete it: remove the link by hand"
            )
        return folder

    def path_of(self, entry: dict[str, Any]) -> Path:
        return self.root / entry["name"] / entry["artifact"]

    def has(self, name: str) -> bool:
        return (self.folder(name) / META).is_file()

    def add(self, entry: dict[str, Any], source: Path, force: bool = False) -> dict[str, Any]:
        """Copy `source` in as `entry` (artifact name = the source's name), verified by sha256."""
        name = entry["name"]
        if self.has(name) and not force:
            raise SparsifyError(
                f"the local zoo already holds {name!r} ({self.folder(name)}); pick another "
                "--name, or replace it with --force"
            )
        expected = sha256_path(source)
        entry = {**entry, "artifact": source.name, "sha256": expected}
        problems = entry_problems(entry, "the new zoo entry")
        if problems:
            raise SparsifyError("; ".join(str(p) for p in problems))
        self.root.mkdir(parents=True, exist_ok=True)
        staging = temp_dir(self.root, prefix=f".{name}.")  # the umask's mode, not 0700
        try:
            target = staging / source.name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copyfile(source, target)
            copied = sha256_path(target)
            if copied != expected:
                raise SparsifyError(
                    f"the copy of {source} in the zoo has sha256 {copied}, not {expected}; "
                    "the disk may be full or the file changed while copying: try again"
                )
            atomic_write_json(staging / META, entry)
            if self.folder(name).exists() or self.folder(name).is_symlink():
                _delete(self.folder(name))
            staging.rename(self.folder(name))
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        log.info("Added %s to the local zoo (%s, sha256 %s)", name, self.folder(name), expected)
        return entry

    def remove(self, name: str) -> Path:
        folder = self.folder(name)
        if not self.has(name):
            raise SparsifyError(
                f"{name!r} is not in the local zoo {self.root}; `sparsify zoo list` shows "
                "what is there (entries of the shipped catalog cannot be removed)"
            )
        _delete(folder)
        return folder


def _finished_run(run_dir: Path) -> RunRecord:
    """A finished run's record, or a SparsifyError saying why it is not one."""
    record = RunRecord.load(run_dir)
    if record.manifest is None or not record.saved_config:
        raise SparsifyError(
            f"{run_dir} is not a run directory (no {MANIFEST} / {CONFIG}); give the "
            "directory a `sparsify ...` run printed as 'Run directory:'"
        )
    missing = record.unfinished("validate", "fetch", "sparsify")
    if missing:
        raise SparsifyError(
            f"{run_dir}: stage(s) {', '.join(missing)} did not finish; finish the run first "
            f"(sparsify run_dir={run_dir} ...)"
        )
    return record


def _metric(record: RunRecord, key: str) -> dict[str, Any] | None:
    metrics = record.metrics()
    if metrics is None:
        return None
    name = metrics.get("metric")
    value = (metrics.get(key) or {}).get(name) if name else None
    return {"name": str(name), "value": value} if name else None


def _removed(report: Any) -> list[dict[str, Any]]:
    """The structured prunings of a run's report that removed units (channels, heads,
    neurons): a pruned model even where none of its remaining weights is zero."""
    items = report if isinstance(report, list) else [report] if isinstance(report, dict) else []
    return [
        dict(s)
        for s in items
        if isinstance(s, dict)
        and isinstance(s.get("kept"), int)
        and isinstance(s.get("width"), int)
        and s["kept"] < s["width"]
    ]


def add_run(
    run_dir: Path,
    name: str,
    tier: str,
    zoo_dir: Path,
    variant: str | None = None,
    use_case: str | None = None,
    force: bool = False,
    description: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a finished run's torch model in the local zoo; returns its entry.

    pruned / pruned_int8 take the pruned checkpoint (sparsify/model.pth; a channel-pruned
    one is pruned even with no zeros, and its entry keeps the run's `structured` report);
    dense takes the dense model the run started from (fetch/); int8 takes the run's own
    checkpoint when it only quantized, else the dense one.
    """
    from sparsify.models import get_family

    run_dir = Path(run_dir).expanduser().resolve()
    record = _finished_run(run_dir)
    cfg = record.cfg
    if tier not in TIERS:
        raise SparsifyError(f"--tier {tier!r}: use one of {', '.join(TIERS)}")
    produced = record.output(SparsifyOutput) or SparsifyOutput()
    fetched = record.output(FetchOutput) or FetchOutput()
    sparsity = float(produced.sparsity)
    structured = _removed(produced.structured)
    variant = variant or ("pruned_int8" if sparsity > 0 or structured else "dense")
    if variant not in VARIANTS:
        raise SparsifyError(f"--variant {variant!r}: use one of {', '.join(VARIANTS)}")
    run_use_case = str(cfg.use_case.name)
    family = str(cfg.use_case.family)
    use_case = use_case or run_use_case
    entry_stub = {"name": name, "family": family}
    if use_case != run_use_case and use_case_family(use_case) != family:
        raise family_error(entry_stub, use_case)
    artifact_name = get_family(family).artifact_name
    quantized = produced.quantization is not None
    if variant.startswith("pruned"):
        if sparsity <= 0 and not structured:
            raise SparsifyError(
                f"{run_dir} pruned nothing (sparsity 0); register it with --variant dense or "
                "int8, or add a run with optim_level >= 0.3"
            )
        rel, key = produced.checkpoint, "sparsified"
    elif variant == "int8" and quantized and sparsity == 0 and not structured:
        rel, key = produced.checkpoint, "sparsified"
    else:
        rel = next((a for a in fetched.artifacts if Path(a).name == artifact_name), None)
        sparsity, key = 0.0, "baseline"
    source = run_dir / rel if rel else None
    if source is None or not source.exists():
        raise SparsifyError(
            f"{run_dir}: the {variant} checkpoint ({rel or artifact_name}) is missing; "
            "re-run the run's fetch and sparsify stages"
        )
    validated = record.output(ValidateOutput) or ValidateOutput()
    dataset = str(cfg.data.get("demo") or validated.data_path or cfg.data.path)
    entry: dict[str, Any] = {
        "name": name,
        "use_cases": [use_case],
        "family": family,
        "arch": str(cfg.model.arch),
        "tier": tier,
        "variant": variant,
        "sparsity": round(sparsity, 6),
        "quantization": "int8" if variant in ("int8", "pruned_int8") else "none",
        "dataset": dataset,
        "metric": _metric(record, key),
        "source": {"local": {"run": str(run_dir)}},
        "added": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": {
            "experiment": str(cfg.experiment.name),
            "optim_level": record.level,
            "checkpoint": str(rel),
            "run_quantization": produced.quantization,
        },
    }
    if structured and variant.startswith("pruned"):
        entry["structured"] = structured
    if description:
        entry["description"] = description
    if provenance:
        entry["provenance"] = {**provenance, "sparsity": round(sparsity, 6)}
    return LocalZoo(zoo_dir).add(entry, source, force=force)
