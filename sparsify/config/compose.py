"""Compose the run config from Python (tests, notebooks, `sparsify.run`)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from sparsify.config.overrides import normalize_overrides
from sparsify.config.schema import register_configs
from sparsify.errors import SparsifyError
from sparsify.report.resources import register_resolvers

CONFIG_MODULE = "sparsify.conf"


def compose_config(overrides: list[str] | None = None, config_dir: str | None = None) -> DictConfig:
    """The composed config for `overrides`, as the `sparsify` command would build it.

    `config_dir` is a folder holding a full copy of conf/ (as `--config-dir` on the CLI).
    """
    register_configs()
    register_resolvers()
    normalized = normalize_overrides(list(overrides or []))
    init = (
        initialize_config_dir(version_base="1.3", config_dir=config_dir)
        if config_dir
        else initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE)
    )
    try:
        with init:
            cfg = compose(config_name="config", overrides=normalized)
    except HydraException as exc:
        raise SparsifyError(f"could not compose the config: {exc}") from None
    OmegaConf.set_readonly(cfg, False)
    return cfg
