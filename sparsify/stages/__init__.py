"""The pipeline: validate -> fetch -> sparsify -> benchmark -> package."""

from sparsify.stages.base import STAGES, Stage
from sparsify.stages.benchmark_stage import BenchmarkStage
from sparsify.stages.fetch import FetchStage
from sparsify.stages.package import PackageStage
from sparsify.stages.sparsify_stage import SparsifyStage
from sparsify.stages.validate import ValidateStage

for _stage in (ValidateStage(), FetchStage(), SparsifyStage(), BenchmarkStage(), PackageStage()):
    STAGES.register(_stage.name, _stage)

__all__ = ["STAGES", "Stage"]
