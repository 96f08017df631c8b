"""Recipes: staged YAML (stage -> *_modifiers -> Name: kwargs) or SparseML's flat lists.

A recipe is read in three steps, and every problem found is reported together:

1. `${...}` interpolates the run config (OmegaConf): `${optim_level}`, `${derived.sparsity}`,
   `${derived.quantize}`, `${experiment.train.epochs}`, `${oc.select:key,default}`.
2. SparseML's recipe variables: a top-level `name: value` is a variable, and a value written
   `eval(expression)` is computed from the variables (numbers, + - * / // % **, min, max,
   round, abs, int, float), e.g. `end_epoch: eval(0.6 * num_epochs)`.
3. Each modifier's name is looked up in the modifier registry (`modifiers/`) and its fields
   are checked by `schema.py` (the class's JSON Schema, then rules across fields: end before
   start, init > final sparsity, N:M with N >= M, ...). Aliases (`params`,
   `disable_quantization_observer_epoch`, `dampening_frac`) become their canonical names, and
   the recipe holds one object of the modifier's class per entry.
"""

from __future__ import annotations

import ast
import importlib.resources
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf

from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.recipes.modifiers import (
    REGISTRY,
    DistillationModifier,
    EpochRangeModifier,
    LearningRateFunctionModifier,
    Modifier,
    QuantizationModifier,
)
from sparsify.recipes.schema import canonical_fields, close_match, modifier_problems, number

__all__ = ["Modifier", "Recipe", "builtin_recipes", "evaluate", "load_recipe"]

M = TypeVar("M", bound=Modifier)


@dataclass
class Recipe:
    source: str
    modifiers: list[Modifier]  # objects of the registered modifier classes, in recipe order
    variables: dict[str, Any] = field(default_factory=dict)  # top-level, after eval()

    def find(self, name: str) -> Modifier | None:
        return next((m for m in self.modifiers if m.name == name), None)

    def first(self, cls: type[M]) -> M | None:
        """The first modifier of class `cls` (the session and the stages use one of each)."""
        return next((m for m in self.modifiers if isinstance(m, cls)), None)

    def by_group(self, group: str) -> list[Modifier]:
        return [m for m in self.modifiers if m.group == group]

    def pruning(self) -> list[Modifier]:
        """Every pruning modifier (magnitude, GMP, global, SparseGPT, constant), in order."""
        return self.by_group("pruning_modifiers")

    def quantization(self) -> QuantizationModifier | None:
        return self.first(QuantizationModifier)

    def learning_rate(self) -> LearningRateFunctionModifier | None:
        return self.first(LearningRateFunctionModifier)

    def distillation(self) -> DistillationModifier | None:
        return self.first(DistillationModifier)

    def epochs(self) -> float:
        """Training length the recipe implies: EpochRangeModifier's end, else the latest epoch
        any modifier names; 0.0 for a one-shot recipe."""
        epoch_range = self.first(EpochRangeModifier)
        end = number(epoch_range.end_epoch) if epoch_range else None
        if end is not None:
            return end
        epochs = [
            float(v)
            for m in self.modifiers
            for k, v in m.kwargs.items()
            if k.endswith("_epoch") and number(v) is not None and v >= 0
        ]
        return max(epochs, default=0.0)

    def window(self, modifier: Modifier) -> tuple[float, float]:
        """(start, end) epochs of a modifier, with SparseML's -1 resolved to the run's ends."""
        start = number(modifier.kwargs.get("start_epoch"))
        end = number(modifier.kwargs.get("end_epoch"))
        return (
            max(start, 0.0) if start is not None else 0.0,
            end if end is not None and end >= 0 else self.epochs(),
        )

    def to_yaml(self) -> str:
        """The recipe as applied (values resolved), in the staged form; load_recipe reads it
        back to the same modifiers. A repeated name in a stage goes to `<kind>_2_modifiers`."""
        stages: dict[str, dict[str, dict[str, Any]]] = {}
        for m in self.modifiers:
            groups = stages.setdefault(m.stage, {})
            group, n = m.group, 1
            while m.name in groups.get(group, {}):
                n += 1
                group = f"{m.group.removesuffix('_modifiers')}_{n}_modifiers"
            groups.setdefault(group, {})[m.name] = m.kwargs
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
        try:
            return str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SparsifyError(
                f"recipe file {path} is not UTF-8 text (byte {exc.start}: "
                f"{exc.object[exc.start : exc.start + 1]!r}); save it as UTF-8 YAML"
            ) from None
    resource = importlib.resources.files("sparsify.builtin_recipes") / f"{name_or_path}.yaml"
    if not resource.is_file():
        raise SparsifyError(
            f"unknown recipe {name_or_path!r}; built-in recipes: {', '.join(builtin_recipes())}, "
            "or give a path to a .yaml file"
        )
    return f"builtin:{name_or_path}", resource.read_text(encoding="utf-8")


# --- YAML ------------------------------------------------------------------------------------


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads SparseML's `- !ModifierName {kwargs}` tags as {ModifierName: kwargs},
    keeps `2:4` a string (YAML 1.1 would read base-60 124) and reads `5e-4` as a float."""


def _tagged_modifier(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.MappingNode):
        return {suffix: loader.construct_mapping(node, deep=True)}
    return {suffix: {}}


_RecipeLoader.add_multi_constructor("!", _tagged_modifier)
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+|0b[01_]+)$"),
    list("-+0123456789"),
)
_RecipeLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


# --- eval(): SparseML's recipe expressions, evaluated without Python's eval ------------------

_EVAL = re.compile(r"^\s*eval\((.*)\)\s*$", re.DOTALL)
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "round": round,
    "abs": abs,
    "int": int,
    "float": float,
}
_EVAL_FIX = (
    "write eval(<expression>) with numbers, recipe variables, + - * / // % **, "
    "min, max, round, abs, int, float"
)


class _Undefined(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is not a recipe variable")
        self.name = name


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    """Compute an eval() expression over numeric recipe variables; ValueError if not allowed.

    Float results keep 12 significant digits."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and number(node.value) is not None:
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise _Undefined(node.id)
            value = variables[node.id]
            if number(value) is None:
                raise ValueError(f"variable {node.id} = {value!r} is not a number")
            return value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ValueError(f"{ast.unparse(node)!r} is not allowed in eval()")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"is not a valid expression ({exc.msg})") from None
    try:
        value = ev(tree.body)
    except ZeroDivisionError:
        raise ValueError("divides by zero") from None
    # drop binary floating-point noise: eval(0.1 * 3) is 0.3, not 0.30000000000000004
    return float(f"{value:.12g}") if isinstance(value, float) else value


def _top_level_variables(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in raw.items()
        if k != "version" and not isinstance(v, dict | list) and not str(k).endswith("modifiers")
    }


def recipe_args_problems(
    source: str, raw: dict[str, Any], args: Mapping[str, Any]
) -> list[Problem]:
    """A `recipe_args` name the recipe does not define, each naming those it does."""
    names = sorted(str(k) for k in _top_level_variables(raw))
    return [
        Problem(
            f"recipe_args.{key}",
            value,
            f"is not a variable of recipe {source}",
            f"use one of: {', '.join(names)}"
            if names
            else "this recipe defines no top-level variables: leave recipe_args empty",
        )
        for key, value in args.items()
        if key not in names
    ]


def check_recipe_args(name_or_path: str, args: Mapping[str, Any]) -> list[Problem]:
    """`recipe_args_problems` read from the recipe file itself (the config check, before a
    run: values are not interpolated, only the names matter)."""
    if not args:
        return []
    source, text = read_recipe_text(name_or_path)
    try:
        raw = yaml.load(text, Loader=_RecipeLoader) or {}
    except yaml.YAMLError:
        return []  # the sparsify stage reports an unreadable recipe
    return recipe_args_problems(source, raw if isinstance(raw, dict) else {}, args)


def _resolve_variables(
    raw: dict[str, Any], source: str, problems: list[Problem], args: Mapping[str, Any]
) -> dict[str, Any]:
    """Top-level scalars are variables, `args` (recipe_args) replacing their values; eval()
    ones may use each other in any order."""
    variables = _top_level_variables(raw)
    bad = recipe_args_problems(source, raw, args)
    problems += bad
    if not bad:
        variables.update(args)  # before eval(): num_epochs=5 moves every eval(... num_epochs)
    pending = {
        k: m.group(1) for k, v in variables.items() if isinstance(v, str) and (m := _EVAL.match(v))
    }
    for k in pending:
        del variables[k]
    while pending:
        progressed = False
        for name, expression in list(pending.items()):
            try:
                variables[name] = evaluate(expression, variables)
            except _Undefined:
                continue
            except (ValueError, TypeError) as exc:
                problems.append(Problem(f"{source}:{name}", raw[name], str(exc), _EVAL_FIX))
            del pending[name]
            progressed = True
        if not progressed:
            for name, expression in pending.items():
                missing = _missing_name(expression, variables)
                problems.append(
                    Problem(
                        f"{source}:{name}",
                        raw[name],
                        f"uses {missing!r}, which is not a recipe variable (or refers back "
                        "to itself)",
                        f"define `{missing}: <value>` at the top of the recipe; variables: "
                        f"{', '.join(sorted(variables)) or '(none)'}",
                    )
                )
            break
    return variables


def _missing_name(expression: str, variables: Mapping[str, Any]) -> str:
    try:
        evaluate(expression, variables)
    except _Undefined as exc:
        return exc.name
    except (ValueError, TypeError):
        pass
    return "?"


def _eval_fields(
    value: Any, variables: Mapping[str, Any], where: str, problems: list[Problem]
) -> tuple[Any, bool]:
    """Evaluate eval() strings anywhere in a modifier's fields; (value, ok)."""
    if isinstance(value, dict):
        out, ok = {}, True
        for k, v in value.items():
            out[k], good = _eval_fields(v, variables, f"{where}.{k}", problems)
            ok = ok and good
        return out, ok
    if isinstance(value, list):
        items = [_eval_fields(v, variables, where, problems) for v in value]
        return [v for v, _ in items], all(good for _, good in items)
    if isinstance(value, str) and (match := _EVAL.match(value)):
        fix = _EVAL_FIX
        try:
            return evaluate(match.group(1), variables), True
        except _Undefined as exc:
            message = f"uses {exc.name!r}, which is not a recipe variable"
            fix = (
                f"define `{exc.name}: <value>` at the top of the recipe; variables: "
                f"{', '.join(sorted(variables)) or '(none)'}"
            )
        except (ValueError, TypeError) as exc:
            message = str(exc)
        problems.append(Problem(where, value, message, fix))
        return value, False
    return value, True


# --- structure -------------------------------------------------------------------------------


def _group_entries(
    stage: str, modifiers: Any, where: str, problems: list[Problem]
) -> list[tuple[str, str, Any]]:
    if isinstance(modifiers, dict):  # staged: Name: kwargs
        return [(stage, str(name).lstrip("!"), kw) for name, kw in modifiers.items()]
    if isinstance(modifiers, list):  # SparseML: - !Name {kwargs}
        out = []
        for item in modifiers:
            if isinstance(item, dict):
                out += [(stage, str(name).lstrip("!"), kw) for name, kw in item.items()]
            else:
                problems.append(
                    Problem(where, item, "is not a modifier", "write `- !ModifierName {fields}`")
                )
        return out
    if modifiers is not None:
        problems.append(
            Problem(where, modifiers, "is not a list or mapping of modifiers", "see recipes/")
        )
    return []


def _entries(
    raw: dict[str, Any], source: str, problems: list[Problem]
) -> list[tuple[str, str, Any]]:
    """(stage, name, kwargs) for both forms; SparseML's top-level `*modifiers:` lists (and the
    `modifiers:` mapping) go to `default_stage`."""
    out: list[tuple[str, str, Any]] = []
    for key, value in raw.items():
        if key == "version" or key.startswith("__"):
            continue
        if key.endswith("modifiers"):
            out += _group_entries("default_stage", value, f"{source}:{key}", problems)
        elif isinstance(value, dict) and any(str(k).endswith("modifiers") for k in value):
            for group, modifiers in value.items():
                where = f"{source}:{key}.{group}"
                if str(group).endswith("modifiers"):
                    out += _group_entries(key, modifiers, where, problems)
                elif group != "run_type":
                    problems.append(
                        Problem(
                            where,
                            modifiers,
                            "is not a modifier group",
                            "a stage holds groups named <kind>_modifiers (pruning_modifiers, "
                            "quantization_modifiers, training_modifiers, distillation_modifiers)",
                        )
                    )
    return out


# --- loading ---------------------------------------------------------------------------------


def load_recipe(
    name_or_path: str, variables: dict[str, Any], args: Mapping[str, Any] | None = None
) -> Recipe:
    """Read, interpolate (`${optim_level}`, `${derived.sparsity}`, ...), eval() and validate;
    `args` (the config's recipe_args) set the recipe's top-level variables."""
    source, text = read_recipe_text(name_or_path)
    try:
        loaded = yaml.load(text, Loader=_RecipeLoader) or {}
        if not isinstance(loaded, dict):
            raise ValueError("a recipe is a YAML mapping (stage -> *_modifiers -> Name: fields)")
        merged = OmegaConf.merge(OmegaConf.create(variables), {"__recipe__": loaded})
        raw = OmegaConf.to_container(merged["__recipe__"], resolve=True)
    except Exception as exc:  # noqa: BLE001 - YAML/interpolation errors are user errors here
        raise SparsifyError(f"recipe {source} cannot be read: {exc}") from None
    problems: list[Problem] = []
    recipe_vars = _resolve_variables(raw, source, problems, dict(args or {}))
    modifiers: list[Modifier] = []
    for stage, name, kwargs in _entries(raw, source, problems):
        key = f"{source}:{stage}.{name}"
        resolved = REGISTRY.resolve(name)
        if resolved is None:
            names = REGISTRY.names()
            problems.append(
                Problem(
                    key,
                    name,
                    "is not a supported modifier",
                    f"{close_match(name, names)}use one of {', '.join(names)}",
                )
            )
            continue
        cls = REGISTRY.get(resolved)
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            problems.append(
                Problem(key, kwargs, "needs a mapping of fields", f"write {name}: {{field: value}}")
            )
            continue
        found = len(problems)
        evaluated = {}
        for field_name, value in kwargs.items():  # a field eval() could not compute is left out
            value, ok = _eval_fields(value, recipe_vars, f"{key}.{field_name}", problems)
            if ok:
                evaluated[field_name] = value
        problems += modifier_problems(key, cls, evaluated)
        fields = canonical_fields(key, cls, evaluated, problems)
        if len(problems) == found:  # valid fields: the class can hold them
            modifiers.append(cls.from_fields(fields, stage))
    if not modifiers and not problems:
        problems.append(
            Problem(
                source,
                None,
                "holds no modifiers",
                "write stage -> <kind>_modifiers -> ModifierName: {fields} (see recipes/), "
                "or SparseML's `modifiers:` list of `- !ModifierName {fields}`",
            )
        )
    if problems:
        raise ValidationError(problems, f"recipe {source}")
    return Recipe(source, modifiers, recipe_vars)
