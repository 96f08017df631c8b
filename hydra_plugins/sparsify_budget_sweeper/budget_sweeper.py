"""`hydra/sweeper=sparsify_budget`: the sweeper class Hydra instantiates, and its schema.

The code is in sparsify.budget.sweeper; this module gives it the name Hydra accepts (a
plugin's class must be defined under `hydra_plugins.`). The module is imported, not the
class, so Hydra's plugin scan registers one sweeper, not two.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from sparsify.budget import sweeper as _impl


class BudgetSweeper(_impl.BudgetSweeper):
    """Trials asked of an Optuna study, run through the configured launcher."""


# conf/hydra/sweeper/sparsify_budget.yaml builds on this: a key the sweeper does not know
# fails at compose time
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="sparsify_budget_schema",
    node=_impl.BudgetSweeperConf,
    provider="sparsify",
)
