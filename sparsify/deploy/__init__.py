"""Running a deployment folder: `Pipeline(dir)(inputs)`."""

from sparsify.deploy.pipeline import Classification, Pipeline

__all__ = ["Classification", "Pipeline"]
