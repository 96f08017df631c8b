"""Config values on the `sparsify` command line: overrides Hydra refuses, values validate
refuses, and paths a run cannot write. Each on the good image folder, so the value is the
only fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hardening.harness import Call, Case, Sandbox, known_bug

IC = ["use_case=cv-classification", "model.arch=tinynet"]


def override_case(
    id: str, overrides: list[str], names: list[str], about: str, kind: str = "ic"
) -> Case:
    """`sparsify <good dataset> <overrides> stages=[validate]`; the message names `names`."""

    def build(sb: Sandbox) -> Call:
        data = sb.copy(kind, "data")
        return Call([*IC, f"data.path={data}", *sb.validate_only(), *overrides], names)

    return Case(id, "sparsify", build, about, known_bug(f"sparsify:{id}"))


VALUES: list[tuple[str, list[str], list[str], str]] = [
    ("level-word", ["optim_level=abc"], ["optim_level", "abc"], "not a number"),
    ("level-nan", ["optim_level=nan"], ["optim_level", "not a number"], "NaN"),
    ("level-inf", ["optim_level=inf"], ["optim_level"], "infinite"),
    ("level-negative", ["optim_level=-0.5"], ["optim_level"], "below 0"),
    ("level-over-100", ["optim_level=150"], ["optim_level", "150"], "over 100 percent"),
    ("level-float-percent", ["optim_level=50.5"], ["optim_level"], "a fractional percent"),
    ("plus-unknown-key", ["+foo=1"], ["+foo"], "an unknown key added with +"),
    ("plusplus-typo", ["++data.pth=x"], ["data.pth", "data.path"], "a typo with ++"),
    ("typo-key", ["data.pth=x"], ["data.pth"], "a typo without +"),
    (
        "unknown-group-key",
        ["benchmark.engine=onnxruntime"],
        ["benchmark.engine"],
        "engine vs engines",
    ),
    ("unknown-arch", ["model.arch=resnet19"], ["model.arch", "resnet19"], "a misspelt arch"),
    (
        "unknown-experiment",
        ["experiment=two_shot"],
        ["experiment", "two_shot"],
        "no such experiment",
    ),
    ("unknown-data-format", ["data=parquet"], ["data", "parquet"], "no such data format"),
    ("format-of-other-use-case", ["data=hf_text"], ["data", "hf_text"], "text format for images"),
    (
        "custom-use-case-training",
        ["use_case=my-thing", "experiment=training_aware"],
        ["use_case", "my-thing"],
        "custom use cases are one-shot only",
    ),
    ("unknown-stage", ["stages=[validate,frobnicate]"], ["frobnicate"], "no such stage"),
    ("stages-not-a-list", ["stages=validate"], ["stages"], "a string, not a list"),
    ("batch-size-zero", ["benchmark.batch_sizes=[0]"], ["benchmark.batch_sizes"], "batch 0"),
    (
        "unknown-engine",
        ["benchmark.engines=[tensorrt]"],
        ["benchmark.engines", "tensorrt"],
        "engine",
    ),
    ("no-engine", ["benchmark.engines=[]"], ["benchmark.engines"], "an empty engine list"),
    ("timeout-zero", ["benchmark.timeout_s=0"], ["benchmark.timeout_s"], "no time to run"),
    ("time-negative", ["benchmark.time_s=-1"], ["benchmark.time_s"], "negative time"),
    ("rounds-zero", ["benchmark.rounds=0"], ["benchmark.rounds"], "no rounds"),
    ("quant-format", ["quantization.format=int4"], ["quantization.format", "int4"], "format"),
    (
        "quant-activation",
        ["quantization.activation_type=int3"],
        ["quantization.activation_type"],
        "type",
    ),
    (
        "quant-calibration",
        ["quantization.calibration=magic"],
        ["quantization.calibration"],
        "method",
    ),
    ("quant-percentile", ["quantization.percentile=150"], ["quantization.percentile"], "over 100"),
    (
        "quant-rounding",
        ["quantization.weight_rounding=up"],
        ["quantization.weight_rounding"],
        "rounding",
    ),
    (
        "quant-zero-point",
        ["quantization.conv_weight_zero_point=maybe"],
        ["quantization.conv_weight_zero_point"],
        "zero point choice",
    ),
    (
        "dynamic-int8-activations",
        ["quantization.format=dynamic", "quantization.activation_type=int8"],
        ["quantization.activation_type"],
        "dynamic quantization is uint8",
    ),
    (
        "calibration-negative",
        ["experiment.calibration_samples=-5"],
        ["experiment.calibration_samples", "-5"],
        "negative count",
    ),
    (
        "calibration-zero",
        ["experiment.calibration_samples=0"],
        ["experiment.calibration_samples"],
        "0 samples where the run calibrates",
    ),
    ("train-samples-zero", ["data.train_samples=0"], ["data.train_samples"], "no train samples"),
    ("val-samples-negative", ["data.val_samples=-1"], ["data.val_samples"], "negative subset"),
    ("unknown-metric", ["benchmark.metric=bleu"], ["benchmark.metric", "bleu"], "metric"),
    (
        "kl-training-aware",
        ["benchmark.metric=kl", "experiment=training_aware"],
        ["benchmark.metric"],
        "kl cannot judge training",
    ),
    (
        "teacher-missing",
        ["experiment=training_aware", "experiment.train.teacher=/nope/t.pth"],
        ["experiment.train.teacher", "/nope/t.pth"],
        "a teacher file that is not there",
    ),
    (
        "teacher-one-shot",
        ["experiment.train.teacher=t.pth"],
        ["experiment.train.teacher"],
        "one-shot has no teacher",
    ),
    (
        "optimizer-missing",
        ["experiment=training_aware", "experiment.train.optimizer=/nope/o.pt"],
        ["experiment.train.optimizer"],
        "an optimizer state that is not there",
    ),
    ("deploy-engine", ["deploy.engine=tensorrt"], ["deploy.engine", "tensorrt"], "engine"),
    ("deploy-scenario", ["deploy.scenario=turbo"], ["deploy.scenario", "turbo"], "scenario"),
    (
        "async-without-deepsparse",
        ["deploy.scenario=async"],
        ["deploy.scenario"],
        "needs deepsparse",
    ),
    ("recipe-arg-unknown", ["+recipe_args.num_epoks=3"], ["num_epoks"], "a recipe variable typo"),
    ("image-size-word", ["data.image_size=big"], ["data.image_size", "big"], "a word for an int"),
    ("epochs-list", ["experiment.train.epochs=[1,2]"], ["experiment.train.epochs"], "a list"),
    ("seed-float", ["seed=1.5"], ["seed", "1.5"], "a fractional seed"),
    ("trust-maybe", ["model.trust_pickle=maybe"], ["model.trust_pickle", "maybe"], "not a bool"),
    ("bad-interpolation", ["data.batch_size=${nope}"], ["nope"], "an interpolation to nothing"),
    ("unclosed-bracket", ["stages=[validate"], ["stages=[validate"], "Hydra syntax error"),
    ("no-equals", ["optim_level"], ["optim_level"], "a key without a value"),
    ("no-data", ["data.path=null"], ["data.path"], "no dataset given"),
]

CASES: list[Case] = [override_case(id, o, n, about) for id, o, n, about in VALUES]
CASES.append(
    override_case(
        "text-column-unknown",
        ["use_case=nlp-text_classification", "data=hf_text", "data.text_column=body"],
        ["data.text_column", "body"],
        "a column the files do not have",
        kind="tc",
    )
)
CASES.append(
    override_case(
        "subset-for-yolo",
        [
            "use_case=cv-detection",
            "data=yolo",
            "baseline.allow_scratch=true",
            "data.train_samples=2",
        ],
        ["data.train_samples"],
        "YOLO sets cannot be cut",
        kind="det",
    )
)


# --- places a run cannot write ---------------------------------------------------------------


def path_case(
    id: str,
    make: Callable[[Sandbox], tuple[list[str], list[str]]],
    about: str,
    entry: str = "sparsify",
) -> Case:
    def build(sb: Sandbox) -> Call:
        data = sb.copy("ic", "data")
        overrides, names = make(sb)
        if entry == "sparsify":
            return Call([*IC, f"data.path={data}", *overrides], names)
        return Call(["one-shot", "--use-case", "ic", "--data", str(data), *overrides], names)

    return Case(id, entry, build, about, known_bug(f"{entry}:{id}"))


def a_file(sb: Sandbox) -> Path:
    """A plain file in the run area (folders below it cannot be made, not even by root)."""
    path = sb.runs / "file"
    path.write_text("x")
    return path


PATHS = [
    path_case(
        "working-dir-below-a-file",
        lambda sb: ([f"working_dir={a_file(sb) / 'runs'}"], ["working_dir", str(sb.runs / "file")]),
        "working_dir cannot be made",
    ),
    path_case(
        "run-dir-is-a-file",
        lambda sb: ([f"run_dir={a_file(sb)}"], ["run_dir", "is a file"]),
        "run_dir is a file",
    ),
    path_case(
        "cache-below-a-file",
        lambda sb: ([f"cache_dir={a_file(sb) / 'cache'}", f"run_dir={sb.run_dir}"], ["cache_dir"]),
        "a cache that cannot be made, with no baseline cached",
    ),
    path_case(
        "sweep-below-a-file",
        lambda sb: (["-m", "optim_level=0.0,0.5", f"working_dir={a_file(sb)}"], ["working_dir"]),
        "a sweep's folder cannot be made",
    ),
    path_case(
        "read-only-run-dir",
        lambda sb: (
            ["run_dir=/sys/kernel", "stages=[benchmark,package]"],
            ["run_dir", "/sys/kernel"],
        ),
        "a read-only run dir for later stages (/sys is read-only even for root)",
    ),
    path_case(
        "legacy-working-dir-below-a-file",
        lambda sb: (["--working-dir", str(a_file(sb) / "w")], ["working_dir"]),
        "the original CLI's --working-dir cannot be made",
        entry="sparsify.run",
    ),
]
CASES += PATHS
