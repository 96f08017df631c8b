"""Running a deployment folder: `Pipeline(dir)(inputs)`; serving it: `sparsify serve dir`."""

from sparsify.deploy.inputs import InputError
from sparsify.deploy.pipeline import Pipeline
from sparsify.deploy.results import Answer, Classification, Detection, Entity, to_jsonable

__all__ = [
    "Answer",
    "Classification",
    "Detection",
    "Entity",
    "InputError",
    "Pipeline",
    "to_jsonable",
]
