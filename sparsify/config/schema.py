"""Dataclass schemas for every config group, registered in Hydra's ConfigStore.

The root schema is the first entry of conf/config.yaml's defaults list, so unknown keys
and wrong types in any group fail when Hydra composes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

STAGE_NAMES = ["validate", "fetch", "sparsify", "benchmark", "package"]


@dataclass
class UseCaseConfig:
    name: str = "cv-classification"
    family: str = "image_classifier"
    task: str = "image-classification"
    metric: str = "top1"
    data_formats: list[str] = field(default_factory=lambda: ["image_folder"])
    # Only custom use cases set this: they run one-shot on a generic model.
    custom: bool = False


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    max_steps: int | None = None  # caps every training loop (tests use 2)
    # the DistillationModifier's teacher: dense (the model as training starts: the dense
    # baseline for training_aware, the foundation for sparse_transfer), off (no distillation),
    # or a checkpoint of the same family and classes
    teacher: str = "dense"
    # an optimizer state (torch.save of optimizer.state_dict()) to resume fine-tuning from;
    # its per-parameter state must fit the model's parameters
    optimizer: str | None = None
    # under torchrun: BatchNorm statistics over every rank's batch (SyncBatchNorm) instead of
    # each rank's own (plain BatchNorm); docs/distributed.md
    sync_batchnorm: bool = False


@dataclass
class ExperimentConfig:
    name: str = "one_shot"
    recipe: str = "one_shot"
    # optim level -> what to do (docs/experiments.md: the table per experiment)
    quantize_from_level: float = 0.0  # levels above this quantize to INT8
    sparsity_from_level: float = 0.3  # levels at or above this also prune
    sparsity_at_start: float = 0.4  # sparsity at sparsity_from_level
    sparsity_at_end: float = 0.8  # sparsity at level 1.0
    # sparse_transfer picks a zoo tier instead: [[upper_level, tier, variant], ...]
    tiers: list[Any] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration_samples: int = 128


@dataclass
class DataConfig:
    format: str = "image_folder"
    path: str | None = None
    # a built-in dataset written to the cache on first use (e.g. `digits`); then `path` may stay null
    demo: str | None = None
    # the model's input side; null: chosen from the train images by the validate stage
    # (sparsify/data/image_sizes.py), a value given here is kept
    image_size: int | None = None
    resize_size: int | None = None  # shorter side before the center crop; null = image_size
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    batch_size: int = 32
    num_workers: int = 0
    max_eval_samples: int | None = None
    # use only this many samples of the split (a subset drawn with `seed`; null = all)
    train_samples: int | None = None
    val_samples: int | None = None
    # text formats: column names (null = the conventional names, see docs/datasets.md)
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    tokens_column: str | None = None
    tags_column: str | None = None
    question_column: str | None = None
    context_column: str | None = None
    answers_column: str | None = None
    max_length: int = 128


@dataclass
class ModelConfig:
    # local checkpoint (.pt/.pth state dict); null trains a dense baseline on the data (cached)
    path: str | None = None
    arch: str = "resnet18"
    # DANGEROUS: true lets a model file run code while it loads (full pickles, e.g. a whole
    # torch.save(model)); false loads only weights and allow-listed classes (docs/security.md)
    trust_pickle: bool = False


@dataclass
class QuantizationConfig:
    # Defaults are what DeepSparse 1.8 executes (docs/benchmark.md): QOperator graphs
    # (QLinearConv / QLinearMatMul), per-tensor, uint8 activations, int8 weights, only Conv and
    # MatMul. It runs QDQ graphs and per-channel weights at ~0 % supported ops, and quantizing
    # Gemm/MaxPool/everything either falls back or aborts it (BERT).
    # qoperator | qdq | dynamic: ONNX Runtime's dynamic quantizer (INT8 weights, activation
    # scales computed per batch at run time, nothing calibrated; MatMul and Conv only).
    # Measured on MiniLM-L6 (batch 16, 1 thread, VNNI): 2.32x dense on ONNX Runtime against
    # 1.93x for qoperator, with a third of its output error. DeepSparse 1.8 aborts on it (an
    # assertion in its planner; the benchmark records the failure): ONNX Runtime only
    format: str = "qoperator"
    per_channel: bool = False
    activation_type: str = "uint8"
    weight_type: str = "int8"
    ops: list[str] = field(default_factory=lambda: ["Conv", "MatMul"])
    # per-tensor weights cannot fit depthwise convolutions (each channel's range differs
    # after BatchNorm folding): keep them FP32 then. Measured on MobileNetV2/digits, 51 %
    # sparse: INT8 top-1 81.4 % with them quantized, 94.2 % kept FP32 (FP32 pruned: 96.7 %)
    fp32_depthwise: bool = True
    # activation ranges: minmax | percentile (clips the rarest values) | entropy. On two
    # 50 %-sparse MobileNetV2/digits models percentile gained 1.4 points on one and lost 1.1 on
    # the other (360 val images): no clear winner, so ORT's default stays
    calibration: str = "minmax"
    percentile: float = 99.99
    # post-training INT8 of a torch model: gptq rounds the weights onto the INT8 grid layer by
    # layer with error compensation (BatchNorm folded first), nearest leaves it to ONNX
    # Runtime. Measured on MobileNetV2/digits: INT8 only, top-1 88.3 % nearest vs 96.4 % gptq
    # (FP32 95.6 %); 70 % sparse, 81.1 % vs 86.4 % (FP32 pruned 87.5 %)
    weight_rounding: str = "gptq"
    # qdq only: write ONNX Runtime's INT8 MatMul kernel with the bias inside
    # (com.microsoft.MatMulIntegerToFloat) where its optimizer would add the bias separately.
    # MiniLM-L6 QDQ, batch 16, 2 threads: 155 -> 131 ms/batch. The file then needs ONNX
    # Runtime; false keeps a pure-ONNX QDQ graph for other QDQ runtimes
    ort_fusions: bool = True
    # qdq only: auto | zero | offset. ONNX Runtime runs an INT8 conv whose weight zero point is
    # 0 on its direct VNNI kernels, any other on im2col + its INT8 GEMM, which uses AMX where
    # the CPU has it. offset stores the symmetric weights with zero point -1 (each value - 1:
    # the same numbers) of the convs deep and large enough for the GEMM to win; auto does so
    # when the CPU quantizing has AMX (amx_int8). YOLOv8s QDQ, 160 px, batch 16, 2 threads,
    # Xeon with AMX: 39.4 -> 35.3 ms/batch
    conv_weight_zero_point: str = "auto"
    # the INT8 graphs written besides this one (sparsify/variants/), each timed and scored by
    # the benchmark, which packages the fastest that holds accuracy (docs/benchmark.md):
    # a format (qoperator | qdq | dynamic) with optional _fp32_depthwise / _int8_depthwise /
    # _no_concat; null = the model family's set; [] = this format only, nothing chosen
    variants: list[str] | None = None
    # post-training INT8 within this many points of the FP32 model's metric on val: the layers
    # INT8 hurts most are kept FP32, one at a time, until it fits (sparsify.algorithms.
    # int8_budget, NNCF's accuracy control on our quantizer); null = every layer INT8
    max_drop: float | None = None


@dataclass
class PruningConfig:
    # the mask the shipped recipes prune with (their mask_type / mask_structure read it):
    # unstructured | blockN (N consecutive input weights pruned together, e.g. block4) | N:M
    # (at most N nonzeros in every M input weights, e.g. 2:4: its sparsity is 1 - N/M at every
    # level that prunes, whatever the level's own). docs/recipes.md
    mask_type: str = "unstructured"


@dataclass
class ExportConfig:
    opset: int = 17


@dataclass
class BenchmarkConfig:
    # onnxruntime always works; add deepsparse after `make deepsparse` (its own virtualenv)
    engines: list[str] = field(default_factory=lambda: ["onnxruntime"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16])
    warmup_s: float = 0.5
    time_s: float = 3.0
    # time_s is cut into this many rounds, baseline and result taken in turn (each round after
    # its own warm-up), so a slow spell of a shared machine hits both alike
    rounds: int = 3
    num_threads: int | None = None  # null = all cores; the same for every engine
    accuracy: bool = True  # the use case's metric on the val split, on every engine
    # each engine runs in a worker process; a step (load, one benchmark, one inference call)
    # that takes longer than this is killed and recorded as a failure
    timeout_s: float = 600.0
    # null = $SPARSIFY_DEEPSPARSE_PYTHON, else .venv-deepsparse/bin/python in the project
    deepsparse_python: str | None = None
    # the metric the table leads with: null = the use case's; kl = KL divergence of the
    # result's outputs from the dense model's on val (no labels needed; lower is better);
    # or accuracy / mAP / recall / f1 / a metric name the use case reports (docs/legacy_cli.md)
    metric: str | None = None
    # with quantization.variants: a candidate may lose at most this many points of the use
    # case's metric against dense on the same engine
    max_drop: float = 1.0
    # latency guard: an INT8 package must reach this throughput over dense on the deployment
    # engine (deploy.engine, default onnxruntime), else the faster of FP32 pruned and dense ships
    min_speedup: float = 1.05


@dataclass
class DeployConfig:
    # the engine the deployment targets (added to benchmark.engines); null = none in particular
    engine: str | None = None
    hardware: str | None = None  # free text recorded in deployment/config.json
    # sync everywhere; async / elastic only on an engine with scheduler modes (deepsparse)
    scenario: str = "sync"


@dataclass
class RunInfoConfig:
    # bookkeeping ids (the original's cloud project / experiment), recorded in config.yaml and
    # the manifest; usable in paths, e.g. working_dir=runs/${run.project_id}
    project_id: str | None = None
    experiment_id: str | None = None


@dataclass
class ZooConfig:
    # the local zoo: models built here or added with `sparsify zoo add` (docs/zoo.md);
    # null = <cache_dir>/zoo
    dir: str | None = None
    # true: only what is on disk (local zoo, Hugging Face cache); false: may download
    # Hugging Face ids into the HF cache and SparseZoo stubs into the zoo dir
    offline: bool = True
    # a YAML catalog merged over the shipped conf/zoo_catalog.yaml (same format)
    catalog: str | None = None
    # when a tier holds several models, prefer this architecture (e.g. mobilenet_v2)
    arch: str | None = None
    # sparse transfer whose pruned tier is missing: build it on first use from a dense model
    # (model.path, or a dense zoo model on this machine) and store it in the local zoo;
    # false: stop with the command that builds it (docs/zoo.md "Built on first use")
    build_missing: bool = True


@dataclass
class BaselineConfig:
    # how the dense baseline is trained and checked before anything is sparsified
    # (docs/experiments.md "The dense baseline"): error | warn | off
    gate: str = "error"
    margin: float = 5.0  # points above the trivial predictor's score the baseline must reach
    min_steps: int = 500  # a small train split gets more epochs, up to max_epochs
    max_epochs: float = 50.0
    step_budget: int = 5000  # a large train split stops here, whatever experiment.train.epochs
    patience: int = 5  # epochs without a better val metric before training stops early
    # YOLO with no model: train a detector from random weights (refused by default)
    allow_scratch: bool = False


@dataclass
class BudgetConfig:
    # the accuracy budget search (hydra/sweeper=sparsify_budget, docs/budget.md); a plain run
    # or another sweeper ignores these keys
    max_drop: float = 1.0  # points of `metric` a package may lose against dense, on val
    trials: int = 8  # runs the search makes at most (the original num_trials)
    max_time: float | None = None  # hours; no new trial starts after (max_train_time)
    engine: str = "onnxruntime"  # the speedup maximised is measured on this engine
    metric: str | None = None  # null = the use case's; or another metric the family reports
    # dimensions searched, merged over the experiment's defaults (the sweeper config's
    # `spaces`): a nested config key -> [choices] or {low, high[, step]}; null drops one
    space: dict[str, Any] = field(default_factory=dict)
    # null: go on with a study already in hydra.sweep.dir; true: also find the latest earlier
    # search of the same command under the multirun folder; false: refuse to reuse one
    resume: bool | None = None
    keep: int | None = 3  # trial run dirs that keep their ONNX/checkpoints (best first)


@dataclass
class SparsifyConfig:
    use_case: UseCaseConfig = field(default_factory=UseCaseConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    run: RunInfoConfig = field(default_factory=RunInfoConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    # 0..1, an integer 1..100 read as percent, or accuracy (0.0) / balanced (0.5) /
    # performant (1.0), as the original CLI took them
    optim_level: float = 0.5
    recipe: str | None = None  # a recipe YAML that overrides the experiment's
    # values for the recipe's top-level variables (e.g. {num_epochs: 5}); a name the recipe
    # does not define is refused, naming those it does
    recipe_args: dict[str, Any] = field(default_factory=dict)
    working_dir: str = "sparsify_runs"
    run_dir: str = "${working_dir}/${experiment.name}_${use_case.name}/${now:%Y-%m-%d_%H-%M-%S}"
    cache_dir: str = "${oc.env:SPARSIFY_CACHE,'~/.cache/sparsify'}"
    stages: list[str] = field(default_factory=lambda: list(STAGE_NAMES))
    seed: int = 0
    device: str = "cpu"


def register_configs() -> None:
    ConfigStore.instance().store(name="sparsify_schema", node=SparsifyConfig)
