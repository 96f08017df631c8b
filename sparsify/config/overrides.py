"""Command-line overrides rewritten before Hydra composes.

- use-case aliases become canonical names (`use_case="Object Detection"` -> cv-detection);
  an unknown name becomes the custom use case, keeping the name the user gave;
- `model=PATH` is shorthand for `model.path=PATH`;
- the data format follows the use case unless `data=` is given;
- `optim_level` values are checked here so that `optim_level=abc` gets our message,
  not a type-conversion trace (sweep functions such as `range(...)` are left to Hydra).
"""

from __future__ import annotations

from sparsify.errors import ValidationError
from sparsify.recipes.levels import normalize_level
from sparsify.use_cases import CUSTOM, normalize_use_case

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
        return value[1:-1]
    return value


def normalize_overrides(overrides: list[str]) -> list[str]:
    out: list[str] = []
    use_cases: list[str] = []
    custom_name: str | None = None
    has_data = False
    for override in overrides:
        parts = _split(override)
        if parts is None:
            out.append(override)
            continue
        prefix, key, value = parts
        if key == "use_case":
            names = [_unquote(v.strip()) for v in value.split(",")]
            canon = [normalize_use_case(n) for n in names]
            for given, c in zip(names, canon, strict=True):
                if c == CUSTOM and given != CUSTOM:
                    custom_name = given
            use_cases = canon
            out.append(f"{prefix}use_case={','.join(canon)}")
        elif key == "optim_level" and "(" not in value:
            for level in value.split(","):
                _, problem = normalize_level(_unquote(level.strip()))
                if problem is not None:
                    raise ValidationError([problem], "the command line")
            out.append(override)
        elif key == "model" and value not in ("null", ""):
            out.append(f"{prefix}model.path={value}")
        else:
            has_data = has_data or key == "data"
            out.append(override)
    if custom_name is not None and len(use_cases) == 1:
        out.append(f"use_case.name={custom_name}")
    if not has_data and len(use_cases) == 1:
        out.append(f"data={DEFAULT_DATA_FORMAT[use_cases[0]]}")
    return out
