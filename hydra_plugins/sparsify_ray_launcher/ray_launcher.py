"""`hydra/launcher=sparsify_ray`: the launcher class Hydra instantiates, and its schema.

The code is in sparsify.launchers.ray_launcher; this module gives it the name Hydra accepts
(a plugin's class must be defined under `hydra_plugins.`). The module is imported, not the
class, so Hydra's plugin scan registers one launcher, not two.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from sparsify.launchers import ray_launcher as _impl


class RayLauncher(_impl.RayLauncher):
    """Each sweep job as a Ray task on the cluster at `ray.init.address`."""


# conf/hydra/launcher/sparsify_ray.yaml builds on this: a key Hydra does not know fails at
# compose time instead of reaching ray.init
ConfigStore.instance().store(
    group="hydra/launcher",
    name="sparsify_ray_schema",
    node=_impl.RayLauncherConf,
    provider="sparsify",
)
