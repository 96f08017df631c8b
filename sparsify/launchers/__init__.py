"""Hydra launchers of our own, for clusters the published plugins cannot reach from this
environment (see ray_launcher.py). Hydra finds them under `hydra_plugins/`."""
