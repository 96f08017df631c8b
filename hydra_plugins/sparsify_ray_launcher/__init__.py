"""sparsify's Ray launcher as a Hydra plugin: Hydra accepts a launcher `_target_` only under the
`hydra_plugins` namespace package and imports every module here when it starts."""
