"""Compose the run config from Python (tests, notebooks, `sparsify.run`), and settle the
values every run reads in one normalized form (`settle_optim_level`, called by
`sparsify.runner.execute` for the CLI and Python alike)."""

from __future__ import annotations

import logging

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from sparsify.config.overrides import normalize_overrides
from sparsify.config.schema import register_configs
from sparsify.errors import SparsifyError
from sparsify.recipes.levels import normalize_level
from sparsify.report.resources import register_resolvers

CONFIG_MODULE = "sparsify.conf"


def compose_config(overrides: list[str] | None = None, config_dir: str | None = None) -> DictConfig:
    """The composed config for `overrides`, as the `sparsify` command would build it.

    `config_dir` is a folder holding a full copy of conf/ (as `--config-dir` on the CLI).
    """
    register_configs()
    register_resolvers()
    normalized = normalize_overrides(list(overrides or []), config_dir)
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


def settle_optim_level(cfg: DictConfig, log: logging.Logger) -> None:
    """Replace `cfg.optim_level` by its fraction, once, before a run reads the config.

    An integer-valued level is ambiguous to the eye (1 is the fraction 1.0, 50 is 50 %), so
    the reading taken is logged. A bad value is left as it is: the validate stage reports it
    together with every other problem.
    """
    given = cfg.optim_level
    level, problem = normalize_level(given)
    if problem is not None or level is None:
        return
    if float(given).is_integer() and float(given) >= 1:
        reading = (
            "the fraction 1.0 (the highest level), not 1 % (write 0.01 for that)"
            if float(given) == 1
            else f"{float(given):.0f} %, the fraction {level:.2f}"
        )
        log.info("optim_level=%s read as %s", given, reading)
    cfg.optim_level = float(level)
