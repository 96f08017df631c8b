"""Recipes: staged YAML (stage -> *_modifiers -> Name: kwargs) or the legacy flat list."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from omegaconf import OmegaConf

from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.recipes.schema import MODIFIERS, modifier_schema


@dataclass
class Modifier:
    stage: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    source: str
    modifiers: list[Modifier]

    def find(self, name: str) -> Modifier | None:
        return next((m for m in self.modifiers if m.name == name), None)

    def to_yaml(self) -> str:
        stages: dict[str, dict[str, dict[str, Any]]] = {}
        for m in self.modifiers:
            group = "pruning_modifiers" if "Pruning" in m.name else "quantization_modifiers"
            stages.setdefault(m.stage, {}).setdefault(group, {})[m.name] = m.kwargs
        return yaml.safe_dump({"version": "1.1.0", **stages}, sort_keys=False)


def builtin_recipes() -> list[str]:
    files = importlib.resources.files("sparsify.builtin_recipes").iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def read_recipe_text(name_or_path: str) -> tuple[str, str]:
    """(source, text) for a built-in recipe name or a YAML file path."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SparsifyError(f"recipe file {path} does not exist; give an existing YAML recipe")
        return str(path), path.read_text(encoding="utf-8")
    resource = importlib.resources.files("sparsify.builtin_recipes") / f"{name_or_path}.yaml"
    if not resource.is_file():
        raise SparsifyError(
            f"unknown recipe {name_or_path!r}; built-in recipes: {', '.join(builtin_recipes())}, "
            "or give a path to a .yaml file"
        )
    return f"builtin:{name_or_path}", resource.read_text(encoding="utf-8")


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads SparseML's `- !ModifierName {kwargs}` tags as {ModifierName: kwargs}."""


def _tagged_modifier(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.MappingNode):
        return {suffix: loader.construct_mapping(node, deep=True)}
    return {suffix: {}}


_RecipeLoader.add_multi_constructor("!", _tagged_modifier)


def _iter_modifiers(raw: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    if "modifiers" in raw:  # legacy flat form: modifiers: [{Name: kwargs}, ...] or {Name: kwargs}
        items = raw["modifiers"]
        items = items if isinstance(items, list) else [items]
        for item in items:
            for name, kwargs in (item or {}).items():
                out.append(("default_stage", name.lstrip("!"), kwargs))
        return out
    for stage, groups in raw.items():
        if stage == "version" or not isinstance(groups, dict):
            continue
        for group, modifiers in groups.items():
            if not group.endswith("modifiers") or not isinstance(modifiers, dict):
                continue
            for name, kwargs in modifiers.items():
                out.append((stage, name, kwargs))
    return out


def load_recipe(name_or_path: str, variables: dict[str, Any]) -> Recipe:
    """Read, interpolate (`${optim_level}`, `${derived.sparsity}`, ...) and validate."""
    source, text = read_recipe_text(name_or_path)
    try:
        node = OmegaConf.create(yaml.load(text, Loader=_RecipeLoader) or {})
        merged = OmegaConf.merge(OmegaConf.create(variables), {"__recipe__": node})
        raw = OmegaConf.to_container(merged["__recipe__"], resolve=True)
    except Exception as exc:  # noqa: BLE001 - YAML/interpolation errors are user errors here
        raise SparsifyError(f"recipe {source} cannot be read: {exc}") from None
    problems: list[Problem] = []
    modifiers: list[Modifier] = []
    for stage, name, kwargs in _iter_modifiers(raw):
        key = f"{source}:{stage}.{name}"
        if name not in MODIFIERS:
            problems.append(
                Problem(
                    key,
                    name,
                    "is not a supported modifier",
                    f"use one of {', '.join(sorted(MODIFIERS))}",
                )
            )
            continue
        kwargs = kwargs or {}
        validator = jsonschema.Draft202012Validator(modifier_schema(name))
        for err in sorted(validator.iter_errors(kwargs), key=str):
            field_path = ".".join(str(p) for p in err.absolute_path) or "(fields)"
            problems.append(
                Problem(
                    f"{key}.{field_path}",
                    err.instance,
                    err.message,
                    f"valid fields: {', '.join(sorted(MODIFIERS[name]))}",
                )
            )
        start, end = kwargs.get("start_epoch"), kwargs.get("end_epoch")
        if start is not None and end is not None and end >= 0 and end < start:
            problems.append(
                Problem(
                    f"{key}.end_epoch",
                    end,
                    "ends before start_epoch",
                    "make end_epoch >= start_epoch",
                )
            )
        modifiers.append(Modifier(stage, name, dict(kwargs)))
    if problems:
        raise ValidationError(problems, f"recipe {source}")
    return Recipe(source, modifiers)
