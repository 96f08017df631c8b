"""Running a deployment folder: `Pipeline(dir)(inputs)`."""

from sparsify.deploy.pipeline import Answer, Classification, Entity, Pipeline

__all__ = ["Answer", "Classification", "Entity", "Pipeline"]
