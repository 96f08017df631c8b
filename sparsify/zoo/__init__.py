"""The model zoo: foundation models per use case and size tier for sparse transfer.

`resolve_foundation(cfg, use_case, tier, variant)` is what the fetch stage calls; the
catalog (conf/zoo_catalog.yaml) says what exists, the local zoo dir holds what was built
or added here (`sparsify zoo add`). See docs/zoo.md.
"""

from __future__ import annotations

from sparsify.zoo.catalog import TIERS, VARIANTS, Catalog, load_catalog
from sparsify.zoo.checksum import sha256_path
from sparsify.zoo.local import LocalZoo, add_run
from sparsify.zoo.resolve import FALLBACKS, ZooModel, resolve_foundation, resolve_model

__all__ = [
    "FALLBACKS",
    "TIERS",
    "VARIANTS",
    "Catalog",
    "LocalZoo",
    "ZooModel",
    "add_run",
    "load_catalog",
    "resolve_foundation",
    "resolve_model",
    "sha256_path",
]
