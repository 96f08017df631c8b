"""Command-line overrides rewritten before Hydra composes.

- use-case aliases become canonical names (`use_case="Object Detection"` -> cv-detection);
  an unknown name becomes the custom use case, keeping the name the user gave;
- `model=PATH` is shorthand for `model.path=PATH`;
- the data format follows the use case unless `data=` is given;
- `optim_level` values are checked here so that `optim_level=abc` gets our message,
  not a type-conversion trace (sweep functions such as `range(...)` are left to Hydra);
- every key must be one of the run config's, `+`/`++` included (`sparsify.config.keys`).

All problems found are raised together, as one ValidationError.
"""

from __future__ import annotations

import re

from sparsify.config.keys import unknown_key_problem
from sparsify.errors import Problem, ValidationError
from sparsify.recipes.levels import named_level, normalize_level
from sparsify.use_cases import CUSTOM, known_use_cases, normalize_use_case

DEFAULT_DATA_FORMAT = {
    "cv-classification": "image_folder",
    "cv-detection": "yolo",
    "cv-segmentation": "yolo",
    "nlp-question_answering": "hf_text",
    "nlp-text_classification": "hf_text",
    "nlp-sentiment_analysis": "hf_text",
    "nlp-token_classification": "hf_text",
    "nlp-named_entity_recognition": "hf_text",
    CUSTOM: "npz",
}


def _split(override: str) -> tuple[str, str, str] | None:
    """(prefix, key, value) of `key=value`, `+key=value`, `++key=value`; None otherwise."""
    if "=" not in override:
        return None
    key, value = override.split("=", 1)
    prefix = ""
    while key.startswith(("+", "~")):
        prefix, key = prefix + key[0], key[1:]
    return prefix, key, value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        # Hydra's escapes: only backslashes before a quote are halved
        return re.sub(
            r"(\\+)(['\"])", lambda m: m.group(1)[: len(m.group(1)) // 2] + m.group(2), value[1:-1]
        )
    return value


def _choices(value: str) -> list[str]:
    """The comma-separated values of a sweep, unquoted; commas inside quotes are kept."""
    parts = re.findall(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[^,]+""", value)
    return [_unquote(p.strip()) for p in parts] or [""]


# a custom use case's name becomes part of the run directory's name
CUSTOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# Hydra options whose value is the next argument (skipped: it is no override)
OPTIONS_WITH_VALUE = {
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "-c",
    "--cfg",
    "-p",
    "--package",
    "--experimental-rerun",
}


def hydra_quote(value: str) -> str:
    """`value` as one Hydra override value that reaches the config as it is: single-quoted
    (spaces, `=`, `,`, brackets and quotes lose their meaning), quotes and the backslashes
    before them escaped, and `${` escaped so that OmegaConf does not read an interpolation."""
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)  # before the closing quote
    body = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", body)  # OmegaConf's rule
    return "'" + body + "'"


def _custom_name_problem(given: str) -> Problem | None:
    if given == CUSTOM or CUSTOM_NAME.fullmatch(given):
        return None
    return Problem(
        "use_case",
        given,
        "is not a known use case, nor a usable custom use case name (it names the run "
        "directory: letters, digits, '-', '_' and '.' only)",
        f"use one of: {', '.join(known_use_cases())}; or a custom name such as my-task "
        "(experiment=one_shot only)",
    )


def config_dir_option(argv: list[str]) -> str | None:
    """The `--config-dir` / `-cd` value of a command line, if any."""
    for i, arg in enumerate(argv):
        if arg in ("-cd", "--config-dir") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config-dir="):
            return arg.split("=", 1)[1]
    return None


# dict-valued keys whose entries are the user's own names (no schema below them)
FREE_DICTS = ("recipe_args", "budget.space")


def in_free_dict(key: str) -> bool:
    """Whether `key` is a free dict or an entry of one: new to the composed config, so Hydra
    adds it only with `++`."""
    return key in FREE_DICTS or key.startswith(tuple(f"{k}." for k in FREE_DICTS))


def _syntax_problem(override: str) -> Problem | None:
    """Hydra's grammar error for one override, naming the override (Hydra's own message names
    neither it nor its key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_override(override)
    except HydraException as exc:
        key = override.split("=", 1)[0].lstrip("+~") if "=" in override else override
        reason = str(exc).splitlines()[0]
        return Problem(
            key,
            override,
            f"not valid override syntax ({reason})",
            "close brackets and quotes, or quote the whole value: key='a value'",
        )
    return None


def normalize_overrides(overrides: list[str], config_dir: str | None = None) -> list[str]:
    """The overrides rewritten for Hydra; raises one ValidationError listing every problem.

    `overrides` may be a whole `sparsify` command line: options (`-m`, `--cfg job`) pass
    through untouched. `config_dir` is a `--config-dir` copy of conf/, whose groups count as
    known keys.
    """
    out: list[str] = []
    problems: list[Problem] = []
    use_cases: list[str] = []
    custom_name: str | None = None
    has_data = False
    skip_next = False
    for override in overrides:
        if skip_next or override.startswith("-"):
            skip_next = override in OPTIONS_WITH_VALUE
            out.append(override)
            continue
        syntax = _syntax_problem(override)
        if syntax is not None:
            problems.append(syntax)
            continue
        parts = _split(override)
        if parts is None:
            out.append(override)
            continue
        prefix, key, value = parts
        if "~" not in prefix:  # deleting an unknown key is Hydra's to refuse
            problem = unknown_key_problem(prefix, key, value, config_dir)
            if problem is not None:
                problems.append(problem)
                continue
        if key == "use_case":
            names = _choices(value)
            canon = [normalize_use_case(n) for n in names]
            for given, c in zip(names, canon, strict=True):
                if c == CUSTOM and given != CUSTOM:
                    custom_name = given
                    problems.extend(p for p in [_custom_name_problem(given)] if p)
            use_cases = canon
            out.append(f"{prefix}use_case={','.join(canon)}")
        elif key == "optim_level" and "(" not in value:
            levels = _choices(value)
            for level in levels:
                _, problem = normalize_level(level)
                if problem is not None:
                    problems.append(problem)
            if any(named_level(level) is not None for level in levels):
                # the schema field is a float: a named level (`balanced`) is its number here
                numbers = [
                    str(named_level(level) if named_level(level) is not None else level)
                    for level in levels
                ]
                out.append(f"{prefix}optim_level={','.join(numbers)}")
            else:
                out.append(override)
        elif in_free_dict(key) and "~" not in prefix:
            # a dict of the recipe's own names / of budget search dimensions: Hydra would want
            # `+` for each new one
            out.append(f"++{key}={value}")
        elif key == "model" and value not in ("null", ""):
            out.append(f"{prefix}model.path={value}")
        else:
            has_data = has_data or key == "data"
            out.append(override)
    if problems:
        raise ValidationError(problems, "the command line")
    if custom_name is not None and len(use_cases) == 1:
        out.append(f"use_case.name={custom_name}")
    if not has_data and len(use_cases) == 1:
        out.append(f"data={DEFAULT_DATA_FORMAT[use_cases[0]]}")
    return out
