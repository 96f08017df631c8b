"""Composing and checking the run config."""

from sparsify.config.compose import compose_config
from sparsify.config.overrides import normalize_overrides
from sparsify.config.schema import STAGE_NAMES, SparsifyConfig, register_configs

__all__ = [
    "STAGE_NAMES",
    "SparsifyConfig",
    "compose_config",
    "normalize_overrides",
    "register_configs",
]
