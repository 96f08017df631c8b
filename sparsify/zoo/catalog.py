"""The zoo catalog: what foundation models exist, per use case, tier and variant.

The shipped catalog is conf/zoo_catalog.yaml (the format is described at its top); a user
catalog (`zoo.catalog`) and the local zoo dir's entries are merged over it by name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.use_cases import known_use_cases

TIERS = ("largest", "medium", "smallest")
VARIANTS = ("dense", "int8", "pruned", "pruned_int8")
SOURCE_KINDS = ("local", "package", "hf", "zoo", "build")

_HEX64 = "^[0-9a-f]{64}$"
_SOURCE = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "local": {"type": "object"},  # written by `sparsify zoo add`: {run: RUN_DIR} or {}
        "package": {
            "type": "object",
            "required": ["module", "path"],
            "additionalProperties": False,
            "properties": {"module": {"type": "string"}, "path": {"type": "string"}},
        },
        "hf": {
            "type": "object",
            "required": ["id"],
            "additionalProperties": False,
            "properties": {"id": {"type": "string"}, "revision": {"type": "string"}},
        },
        "zoo": {"type": "string", "pattern": "^zoo:"},
        "build": {"type": "string"},
    },
}
ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "use_cases",
        "family",
        "arch",
        "tier",
        "variant",
        "sparsity",
        "quantization",
        "dataset",
        "source",
    ],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
        "use_cases": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "family": {"type": "string"},
        "arch": {"type": "string"},
        "tier": {"enum": list(TIERS)},
        "variant": {"enum": list(VARIANTS)},
        "sparsity": {"type": "number", "minimum": 0, "maximum": 1},
        "quantization": {"type": "string"},
        "dataset": {"type": "string"},
        "metric": {
            "type": ["object", "null"],
            "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": ["number", "null"]}},
        },
        "source": _SOURCE,
        "sha256": {"type": ["string", "null"], "pattern": _HEX64},
        "description": {"type": "string"},
        # local zoo entries only: the file or folder beside zoo.json, and when/how it was added
        "artifact": {"type": "string"},
        "added": {"type": "string"},
        "run": {"type": "object"},
        # a tier built on first use (sparsify/zoo/build.py): source model sha256, data
        # fingerprint, recipe, date, measured sparsity
        "provenance": {"type": "object"},
        # a channel-pruned model (`sparsify zoo add` of a run that removed channels): the
        # run's structured pruning report (width -> kept, MACs and parameters before/after);
        # the checkpoint itself records the thin layer widths it is rebuilt with
        "structured": {"type": "array", "items": {"type": "object"}},
    },
}


@cache
def use_case_family(use_case: str) -> str:
    """The model family of a canonical use case, from its conf/use_case/*.yaml."""
    text = (resources.files("sparsify.conf") / "use_case" / f"{use_case}.yaml").read_text()
    return str(yaml.safe_load(text)["use_case"]["family"])


def entry_problems(entry: Any, where: str) -> list[Problem]:
    """Why `entry` is not a valid catalog entry (empty if it is)."""
    name = entry.get("name", "?") if isinstance(entry, dict) else "?"
    key = f"{where}: {name}"
    problems = [
        Problem(
            f"{key}.{'.'.join(str(p) for p in err.absolute_path) or '(entry)'}",
            err.instance if not isinstance(err.instance, dict) else "{...}",
            err.message,
            "see the format at the top of conf/zoo_catalog.yaml (docs/zoo.md)",
        )
        for err in jsonschema.Draft202012Validator(ENTRY_SCHEMA).iter_errors(entry)
    ]
    if problems:
        return problems
    for use_case in entry["use_cases"]:
        if use_case not in known_use_cases():
            problems.append(
                Problem(
                    f"{key}.use_cases",
                    use_case,
                    "is not a canonical use case name",
                    f"use one of: {', '.join(known_use_cases())}",
                )
            )
        elif use_case_family(use_case) != entry["family"]:
            problems.append(
                Problem(
                    f"{key}.family",
                    entry["family"],
                    f"is the wrong family for use case {use_case} "
                    f"(which needs {use_case_family(use_case)} models)",
                    f"set family: {use_case_family(use_case)}, or drop {use_case} from use_cases",
                )
            )
    return problems


def family_error(entry: dict[str, Any], use_case: str) -> SparsifyError:
    needed = use_case_family(use_case)
    return SparsifyError(
        f"zoo model {entry['name']!r} is a {entry['family']} model, but use case {use_case} "
        f"needs a {needed} model; pick a {needed} model (sparsify zoo list --use-case "
        f"{use_case}), or fix the model's family / use_cases in its zoo.json"
    )


@dataclass
class Catalog:
    """Entries by name, in preference order (local zoo first, then the catalogs' order)."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # name -> local | catalog | FILE

    def add(self, entry: dict[str, Any], origin: str) -> None:
        self.entries.pop(entry["name"], None)  # a later source replaces an earlier one
        self.entries[entry["name"]] = entry
        self.origin[entry["name"]] = origin

    def ordered(self) -> list[dict[str, Any]]:
        local = [e for n, e in self.entries.items() if self.origin[n] == "local"]
        return local + [e for n, e in self.entries.items() if self.origin[n] != "local"]

    def for_use_case(self, use_case: str) -> list[dict[str, Any]]:
        return [e for e in self.ordered() if use_case in e["use_cases"]]

    def by_stub(self, stub: str) -> dict[str, Any] | None:
        return next((e for e in self.ordered() if e["source"].get("zoo") == stub), None)

    def get(self, name_or_stub: str) -> dict[str, Any]:
        """The entry of a name or `zoo:` stub; unknown ones list the close matches."""
        if name_or_stub in self.entries:
            return self.entries[name_or_stub]
        found = self.by_stub(name_or_stub) if name_or_stub.startswith("zoo:") else None
        if found:
            return found
        stubs = [str(e["source"]["zoo"]) for e in self.ordered() if "zoo" in e["source"]]
        pool = stubs if name_or_stub.startswith("zoo:") else list(self.entries)
        close = difflib.get_close_matches(name_or_stub, pool, n=5, cutoff=0.5)
        what = "SparseZoo stub" if name_or_stub.startswith("zoo:") else "model"
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise SparsifyError(
            f"{what} {name_or_stub!r} is not in the zoo catalog{hint}. "
            "See what there is with `sparsify zoo list`, or register your own model with "
            "`sparsify zoo add RUN_DIR --name NAME --tier TIER`"
        )


def read_catalog_file(text: str, where: str) -> list[dict[str, Any]]:
    """The entries of a catalog YAML; every problem in it is reported at once."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SparsifyError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise SparsifyError(f"{where}: expected a mapping with a `models:` list (docs/zoo.md)")
    problems = [p for entry in data["models"] for p in entry_problems(entry, where)]
    names = [e.get("name") for e in data["models"] if isinstance(e, dict)]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(f"{where}: {dup}", dup, "is listed twice", "give it a new name"))
    if problems:
        raise ValidationError(problems, where)
    return list(data["models"])


def shipped_catalog_text() -> str:
    return (resources.files("sparsify.conf") / "zoo_catalog.yaml").read_text(encoding="utf-8")


def load_catalog(zoo_dir: Path | None = None, extra: str | None = None) -> Catalog:
    """Shipped catalog, then the `extra` catalog file, then the local zoo dir's entries."""
    catalog = Catalog()
    for entry in read_catalog_file(shipped_catalog_text(), "conf/zoo_catalog.yaml"):
        catalog.add(entry, "catalog")
    if extra:
        path = Path(extra).expanduser()
        if not path.is_file():
            raise SparsifyError(f"zoo.catalog = {extra!r} is not a file; give a catalog YAML")
        for entry in read_catalog_file(path.read_text(encoding="utf-8"), str(path)):
            catalog.add(entry, str(path))
    if zoo_dir is not None:
        from sparsify.zoo.local import LocalZoo

        for entry in LocalZoo(zoo_dir).entries():
            catalog.add(entry, "local")
    return catalog
