"""sparsify's accuracy budget search as a Hydra sweeper plugin: Hydra accepts a sweeper
`_target_` only under the `hydra_plugins` namespace package and imports every module here."""
