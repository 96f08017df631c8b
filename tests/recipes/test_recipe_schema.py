"""The modifier vocabulary: shipped recipes validate at every level, bad fields are named."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from sparsify.config import compose_config
from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.recipes.levels import derive
from sparsify.recipes.recipe import builtin_recipes, evaluate, load_recipe
from sparsify.recipes.schema import MODIFIERS

EXPERIMENTS = ("one_shot", "training_aware", "sparse_transfer")
LEVELS = (0.0, 0.2, 0.5, 1.0)
VARS = {"optim_level": 0.5, "derived": {"sparsity": 0.5, "quantize": True}}


@cache
def _experiment(name: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose_config([f"experiment={name}"]).experiment, resolve=True)  # type: ignore[return-value]


def run_variables(experiment: str, level: float) -> dict[str, Any]:
    """What the pipeline passes (stages/validate.py recipe_variables), without a run."""
    exp = _experiment(experiment)
    d = derive(OmegaConf.create(exp), level)
    return {
        "optim_level": level,
        "derived": {
            "sparsity": d.sparsity,
            "quantize": d.quantize,
            "tier": d.tier,
            "variant": d.variant,
        },
        "experiment": exp,
    }


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        load_recipe(write(tmp_path, text), VARS)
    return info.value.problems


def one_problem(tmp_path: Path, text: str) -> Problem:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


def gmp(**fields: Any) -> str:
    """A staged recipe holding one GMPruningModifier with `fields` (as YAML flow values)."""
    body = "".join(f"      {k}: {v}\n" for k, v in fields.items())
    return f"stage:\n  pruning_modifiers:\n    GMPruningModifier:\n{body}"


# --- shipped recipes ---------------------------------------------------------------------------


def test_ships_the_recipes_each_experiment_names() -> None:
    names = set(builtin_recipes())
    assert {"one_shot", "one_shot_sparsegpt", "training_aware", "sparse_transfer"} <= names
    for experiment in EXPERIMENTS:
        assert _experiment(experiment)["recipe"] in names


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", builtin_recipes())
def test_every_shipped_recipe_validates_at_every_level(
    name: str, experiment: str, level: float
) -> None:
    variables = run_variables(experiment, level)
    recipe = load_recipe(name, variables)
    assert recipe.modifiers
    quant = recipe.quantization()
    assert quant is not None and quant.kwargs["enabled"] is variables["derived"]["quantize"]
    for m in recipe.pruning():
        target = m.kwargs.get("final_sparsity", m.kwargs.get("sparsity"))
        if target is not None:
            assert target == pytest.approx(_expected_target(name, m, level, variables))
    assert load_recipe(name, variables).to_yaml() == recipe.to_yaml()


# channel recipes map the level to a removed share of channels of their own (documented in
# each recipe's header): none below 0.3, then linear up to this share at 1.0
CHANNEL_SHARE = {"one_shot_channels": 0.5, "training_aware_channels": 0.7}


# training_aware_structured: removed share of FFN neurons / attention heads at level 1.0 (the
# same ramp); its GMP prunes the level's sparsity
UNIT_SHARE = {"ffn_neurons": 0.5, "attention_heads": 0.25}


def _expected_target(name: str, modifier: Any, level: float, variables: dict) -> float:
    if name == "training_aware_structured" and modifier.name == "StructuredPruningModifier":
        share = UNIT_SHARE[modifier.kwargs["structure"]]
        return share * max(0.0, min(1.0, (level - 0.3) / 0.7))
    if name not in CHANNEL_SHARE:
        return float(variables["derived"]["sparsity"])
    if modifier.name == "ChannelPruningModifier" or modifier.kwargs.get("structure") == "channels":
        return CHANNEL_SHARE[name] * max(0.0, min(1.0, (level - 0.3) / 0.7))
    return 0.0  # the recipe's unstructured_sparsity, 0 by default: the thin model stays dense


def test_training_aware_structured_removes_units_then_prunes_then_quantizes() -> None:
    variables = run_variables("training_aware", 1.0)
    epochs = float(variables["experiment"]["train"]["epochs"])
    recipe = load_recipe("training_aware_structured", variables)
    ffn, gmp_, heads = recipe.pruning()
    assert (ffn.kwargs["structure"], heads.kwargs["structure"]) == (
        "ffn_neurons",
        "attention_heads",
    )
    assert (
        recipe.window(ffn) == recipe.window(heads) == pytest.approx((0.1 * epochs, 0.35 * epochs))
    )
    assert recipe.window(gmp_) == pytest.approx((0.35 * epochs, 0.65 * epochs))  # after removal
    assert gmp_.kwargs["final_sparsity"] == pytest.approx(variables["derived"]["sparsity"])
    assert recipe.quantization().kwargs["start_epoch"] == pytest.approx(0.8 * epochs)
    args = {"ffn_fraction": 0.3, "head_fraction": 0.5}
    ffn, _, heads = load_recipe("training_aware_structured", variables, args).pruning()
    assert (ffn.kwargs["final_sparsity"], heads.kwargs["final_sparsity"]) == (0.3, 0.5)


@pytest.mark.parametrize("level", LEVELS)
def test_training_aware_fills_the_schedule_from_the_run(level: float) -> None:
    variables = run_variables("training_aware", level)
    epochs = float(variables["experiment"]["train"]["epochs"])
    recipe = load_recipe("training_aware", variables)
    assert recipe.epochs() == epochs
    gmp_ = recipe.find("GMPruningModifier")
    assert gmp_ is not None
    kw = gmp_.kwargs
    assert kw["inter_func"] == "cubic" and kw["targets"] == "__ALL_PRUNABLE__"
    assert kw["final_sparsity"] == pytest.approx(variables["derived"]["sparsity"])
    assert kw["init_sparsity"] == min(0.05, kw["final_sparsity"])
    assert (kw["start_epoch"], kw["end_epoch"]) == pytest.approx((0.1 * epochs, 0.6 * epochs))
    assert kw["update_frequency"] == pytest.approx(0.05 * epochs)
    quant = recipe.quantization()
    assert quant is not None and quant.kwargs["start_epoch"] == pytest.approx(0.8 * epochs)
    lr = recipe.learning_rate()
    assert lr is not None and lr.kwargs["lr_func"] == "cosine"
    assert lr.kwargs["init_lr"] == pytest.approx(variables["experiment"]["train"]["lr"])
    distill = recipe.distillation()
    assert distill is not None
    assert (distill.kwargs["hardness"], distill.kwargs["temperature"]) == (0.5, 2.0)
    assert recipe.window(distill) == (0.0, epochs)  # end_epoch -1 = the end of training


def test_training_aware_at_level_one_reaches_95_percent() -> None:
    recipe = load_recipe("training_aware", run_variables("training_aware", 1.0))
    assert recipe.find("GMPruningModifier").kwargs["final_sparsity"] == pytest.approx(0.95)


def test_sparse_transfer_holds_masks_for_the_whole_run() -> None:
    variables = run_variables("sparse_transfer", 0.5)
    recipe = load_recipe("sparse_transfer", variables)
    epochs = float(variables["experiment"]["train"]["epochs"])
    [constant] = recipe.pruning()
    assert constant.name == "ConstantPruningModifier"
    assert constant.kwargs["targets"] == "__ALL_PRUNABLE__"
    assert recipe.window(constant) == (0.0, epochs)
    assert recipe.quantization().kwargs["start_epoch"] == pytest.approx(0.8 * epochs)


def test_one_shot_sparsegpt_variant() -> None:
    recipe = load_recipe("one_shot_sparsegpt", run_variables("one_shot", 1.0))
    kw = recipe.find("SparseGPTModifier").kwargs
    assert kw == {
        "sparsity": pytest.approx(0.8),
        "block_size": 128,
        "percdamp": 0.01,
        "mask_structure": "unstructured",
        "targets": "__ALL_PRUNABLE__",
        "ignore": [],
        "recalibrate_batchnorm": True,
        "sequential_update": True,
    }
    assert recipe.epochs() == 0.0


def test_recipes_load_without_an_experiment_in_the_variables() -> None:
    recipe = load_recipe("training_aware", VARS)  # oc.select falls back to 10 epochs
    assert recipe.epochs() == 10.0


# --- bad recipes -------------------------------------------------------------------------------


def test_unknown_modifier_lists_valid_ones(tmp_path: Path) -> None:
    p = one_problem(tmp_path, "stage:\n  pruning_modifiers:\n    GMPPruningModifier: {}\n")
    assert "GMPPruningModifier" in p.key
    assert "did you mean GMPruningModifier" in p.fix
    assert all(name in p.fix for name in MODIFIERS)


def test_unknown_field_lists_valid_fields(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(final_sparsity=0.5, inter_fun="cubic"))
    assert p.key.endswith("GMPruningModifier.inter_fun")
    assert "did you mean inter_func" in p.fix
    assert all(f in p.fix for f in ("init_sparsity", "update_frequency", "mask_type", "params"))


def test_wrong_types(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, gmp(start_epoch="ten", leave_enabled=1.5, params=3))
    keys = {p.key.rsplit(".", 1)[-1]: p for p in problems}
    assert set(keys) == {"start_epoch", "leave_enabled", "params"}
    assert all("GMPruningModifier" in p.key for p in problems)
    assert "not of type 'number'" in keys["start_epoch"].message
    assert "epoch" in keys["start_epoch"].fix


def test_end_before_start(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(start_epoch=5, end_epoch=2))
    assert p.key.endswith("GMPruningModifier.end_epoch") and "before start_epoch" in p.message


def test_end_minus_one_means_end_of_training(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, gmp(start_epoch=5, end_epoch=-1)), VARS)
    assert recipe.find("GMPruningModifier").kwargs["end_epoch"] == -1


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
@pytest.mark.parametrize(
    ("modifier", "field"),
    [("GMPruningModifier", "final_sparsity"), ("SparseGPTModifier", "sparsity")],
)
def test_sparsity_outside_0_1(tmp_path: Path, modifier: str, field: str, value: float) -> None:
    text = f"stage:\n  pruning_modifiers:\n    {modifier}:\n      {field}: {value}\n"
    p = one_problem(tmp_path, text)
    assert p.key.endswith(f"{modifier}.{field}") and p.value == value
    assert "[0, 1)" in p.fix


@pytest.mark.parametrize("field", ["mask_type", "mask_structure"])
@pytest.mark.parametrize("mask", ["4:2", "'4:2'", "2:2"])
def test_bad_n_m(tmp_path: Path, field: str, mask: str) -> None:
    name = "GMPruningModifier" if field == "mask_type" else "SparseGPTModifier"
    text = f"stage:\n  pruning_modifiers:\n    {name}:\n      {field}: {mask}\n"
    p = one_problem(tmp_path, text)
    assert p.key.endswith(f"{name}.{field}") and "N < M" in p.message
    assert p.value == mask.strip("'")  # unquoted 4:2 stays a string (YAML 1.1: base-60 242)


@pytest.mark.parametrize("mask", ["unstructured", "block4", "block", "2:4", "'1:8'"])
def test_good_masks(tmp_path: Path, mask: str) -> None:
    recipe = load_recipe(write(tmp_path, gmp(mask_type=mask)), VARS)
    assert recipe.find("GMPruningModifier").kwargs["mask_type"] == mask.strip("'")


@pytest.mark.parametrize("mask", ["structured", "block0", "0:4", "2:"])
def test_mask_pattern(tmp_path: Path, mask: str) -> None:
    p = one_problem(tmp_path, gmp(mask_type=f"'{mask}'"))
    assert p.key.endswith("GMPruningModifier.mask_type") and "blockN" in p.fix


def test_bad_inter_func_lists_choices(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(inter_func="quadratic"))
    assert p.key.endswith("GMPruningModifier.inter_func")
    assert all(f in p.message + p.fix for f in ("linear", "cubic", "inverse_cubic"))


def test_init_above_final(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(init_sparsity=0.6, final_sparsity=0.5))
    assert p.key.endswith("GMPruningModifier.init_sparsity") and "final_sparsity" in p.message


@pytest.mark.parametrize("frequency", [0, -1])
def test_update_frequency_must_be_positive(tmp_path: Path, frequency: float) -> None:
    p = one_problem(tmp_path, gmp(update_frequency=frequency))
    assert p.key.endswith("GMPruningModifier.update_frequency")


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ("{hardness: 1.5}", "hardness"),
        ("{temperature: 0}", "temperature"),
        ("{temperature: 2.0, colour: red}", "colour"),
    ],
)
def test_distillation_fields(tmp_path: Path, fields: str, bad_field: str) -> None:
    p = one_problem(
        tmp_path, f"s:\n  distillation_modifiers:\n    DistillationModifier: {fields}\n"
    )
    assert p.key.endswith(f"DistillationModifier.{bad_field}")


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ("{lr_func: exponential}", "lr_func"),
        ("{lr_func: cyclic_linear, init_lr: 0.1, final_lr: 0.0}", "cycle_epochs"),
        ("{lr_func: step, init_lr: 0.1, final_lr: 0.0, cycle_epochs: 2}", "final_lr"),
        ("{lr_func: cosine, init_lr: -0.1}", "init_lr"),
    ],
)
def test_learning_rate_fields(tmp_path: Path, fields: str, bad_field: str) -> None:
    text = f"s:\n  training_modifiers:\n    LearningRateFunctionModifier: {fields}\n"
    p = one_problem(tmp_path, text)
    assert p.key.endswith(f"LearningRateFunctionModifier.{bad_field}")


@pytest.mark.parametrize(
    ("scheme", "bad_key"),
    [
        ("{weights: {num_bits: 4}}", "scheme.weights.num_bits"),
        ("{activations: {strategy: channel}}", "scheme.activations.strategy"),
        ("{weights: {strategy: group}}", "scheme.weights.strategy"),
        ("{biases: {num_bits: 8}}", "scheme.biases"),
    ],
)
def test_quantization_scheme(tmp_path: Path, scheme: str, bad_key: str) -> None:
    text = f"s:\n  quantization_modifiers:\n    QuantizationModifier: {{scheme: {scheme}}}\n"
    p = one_problem(tmp_path, text)
    assert p.key.endswith(f"QuantizationModifier.{bad_key}")


def test_quantization_freeze_before_start(tmp_path: Path) -> None:
    text = (
        "s:\n  quantization_modifiers:\n    QuantizationModifier:\n"
        "      start_epoch: 8\n      freeze_bn_stats_epoch: 7\n"
    )
    p = one_problem(tmp_path, text)
    assert p.key.endswith("QuantizationModifier.freeze_bn_stats_epoch")


def test_bad_regex_target(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(params="['re:layer[0-9']"))
    assert p.key.endswith("GMPruningModifier.params") and "regex" in p.message


def test_alias_and_canonical_together(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(params="__ALL_PRUNABLE__", targets="__ALL__"))
    assert p.key.endswith("GMPruningModifier.params") and "targets" in p.fix


def test_several_problems_reported_together(tmp_path: Path) -> None:
    text = (
        "stage:\n"
        "  pruning_modifiers:\n"
        "    GMPruningModifier:\n"
        "      final_sparsity: 1.0\n"
        "      start_epoch: 6\n"
        "      end_epoch: 3\n"
        "      inter_func: quadratic\n"
        "      mask_type: '4:2'\n"
        "    SparseGPTModifier: {sparsity: -0.1, block_size: 0}\n"
        "    FancyModifier: {}\n"
        "  training_modifiers:\n"
        "    EpochRangeModifier: {start_epoch: 0, end_epoch: ten}\n"
    )
    with pytest.raises(ValidationError) as info:
        load_recipe(write(tmp_path, text), VARS)
    keys = sorted(p.key.split(":", 1)[1] for p in info.value.problems)
    assert keys == [
        "stage.EpochRangeModifier.end_epoch",
        "stage.FancyModifier",
        "stage.GMPruningModifier.end_epoch",
        "stage.GMPruningModifier.final_sparsity",
        "stage.GMPruningModifier.inter_func",
        "stage.GMPruningModifier.mask_type",
        "stage.SparseGPTModifier.block_size",
        "stage.SparseGPTModifier.sparsity",
    ]
    assert "8 problem(s)" in str(info.value)


def test_recipe_without_modifiers(tmp_path: Path) -> None:
    p = one_problem(tmp_path, "stage:\n  pruning_modifier:\n    GMPruningModifier: {}\n")
    assert "no modifiers" in p.message


def test_stage_key_that_is_not_a_group(tmp_path: Path) -> None:
    p = one_problem(tmp_path, gmp(final_sparsity=0.5) + "  extras: 1\n")
    assert p.key.endswith("stage.extras") and "pruning_modifiers" in p.fix


def test_unreadable_recipe(tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="cannot be read"):
        load_recipe(write(tmp_path, gmp(final_sparsity="${derived.missing}")), VARS)


# --- SparseML's legacy form and eval() ---------------------------------------------------------

LEGACY = """
version: 1.1.0
num_epochs: 10.0
init_lr: 5e-4
pruning_start_epoch: eval(num_epochs * 0.2)
pruning_end_epoch: eval(pruning_start_epoch + 0.6 * num_epochs)
qat_start_epoch: eval(num_epochs - 2)

training_modifiers:
  - !EpochRangeModifier
    start_epoch: 0.0
    end_epoch: eval(num_epochs)
  - !LearningRateFunctionModifier
    lr_func: linear
    init_lr: 0.0
    final_lr: eval(init_lr)
    start_epoch: 0.0
    end_epoch: 1.0
  - !LearningRateFunctionModifier
    lr_func: cosine
    init_lr: eval(init_lr)
    final_lr: 0.0
    start_epoch: 1.0
    end_epoch: eval(num_epochs)

pruning_modifiers:
  - !GMPruningModifier
    params: ["re:.*conv.*weight", "fc.weight"]
    init_sparsity: 0.05
    final_sparsity: 0.8
    start_epoch: eval(pruning_start_epoch)
    end_epoch: eval(pruning_end_epoch)
    update_frequency: 0.5
    inter_func: inverse_cubic
    mask_type: 2:4
  - !GlobalMagnitudePruningModifier
    params: __ALL_PRUNABLE__
    final_sparsity: 0.7
    start_epoch: 0
    end_epoch: 5
    update_frequency: 1
  - !MagnitudePruningModifier
    final_sparsity: 0.5
  - !SparseGPTModifier
    sparsity: 0.5
    dampening_frac: 0.01
    mask_structure: 2:4
  - !ConstantPruningModifier
    params: __ALL_PRUNABLE__
    start_epoch: 0.0
  - !StructuredPruningModifier
    structure: ffn_neurons
    final_sparsity: 0.5
    end_epoch: 4.0
  - !ChannelPruningModifier
    sparsity: 0.25
    importance: bn_scale

modifiers:
  - !QuantizationModifier
    start_epoch: eval(qat_start_epoch)
    disable_quantization_observer_epoch: eval(qat_start_epoch + 1)
    freeze_bn_stats_epoch: eval(qat_start_epoch + 1)
  - !DistillationModifier
    hardness: 1.0
    temperature: 2.0
"""


def test_legacy_tag_form_parses_every_modifier(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, LEGACY), VARS)
    assert {m.name for m in recipe.modifiers} == set(MODIFIERS)
    assert {m.stage for m in recipe.modifiers} == {"default_stage"}
    kw = recipe.find("GMPruningModifier").kwargs
    assert (kw["start_epoch"], kw["end_epoch"]) == (2.0, 8.0)
    assert kw["mask_type"] == "2:4"
    assert kw["targets"] == ["re:.*conv.*weight", "fc.weight"]  # params -> targets
    assert "params" not in kw
    assert recipe.find("SparseGPTModifier").kwargs["percdamp"] == 0.01  # dampening_frac
    quant = recipe.quantization().kwargs
    assert quant == {"start_epoch": 8.0, "freeze_observer_epoch": 9.0, "freeze_bn_stats_epoch": 9.0}
    assert recipe.find("LearningRateFunctionModifier").kwargs["final_lr"] == 5e-4
    assert recipe.variables["pruning_end_epoch"] == 8.0
    assert recipe.epochs() == 10.0
    assert [m.name for m in recipe.pruning()] == [
        "GMPruningModifier",
        "GlobalMagnitudePruningModifier",
        "MagnitudePruningModifier",
        "SparseGPTModifier",
        "ConstantPruningModifier",
        "StructuredPruningModifier",
        "ChannelPruningModifier",
    ]


def test_to_yaml_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, LEGACY), VARS)
    text = recipe.to_yaml()
    assert "eval(" not in text and "training_2_modifiers" in text  # the second LR modifier
    again = load_recipe(write(tmp_path, text), VARS)
    key = lambda m: (m.stage, m.name, repr(m.kwargs))  # noqa: E731
    assert sorted(map(key, again.modifiers)) == sorted(map(key, recipe.modifiers))
    assert again.to_yaml() == text


@pytest.mark.parametrize("name", builtin_recipes())
def test_shipped_recipes_round_trip(tmp_path: Path, name: str) -> None:
    recipe = load_recipe(name, run_variables("training_aware", 0.5))
    again = load_recipe(write(tmp_path, recipe.to_yaml()), {})
    assert again.modifiers == recipe.modifiers


def test_eval_problems_name_the_field(tmp_path: Path) -> None:
    text = gmp(start_epoch="eval(warmup * 2)", end_epoch="eval(__import__('os'))")
    problems = problems_of(tmp_path, text)
    by_field = {p.key.rsplit(".", 1)[-1]: p for p in problems}
    assert set(by_field) == {"start_epoch", "end_epoch"}
    assert "warmup" in by_field["start_epoch"].message
    assert "not allowed" in by_field["end_epoch"].message


def test_eval_variables_in_any_order_and_cycles(tmp_path: Path) -> None:
    text = "b: eval(a * 2)\na: 3\n" + gmp(end_epoch="eval(b)")
    assert load_recipe(write(tmp_path, text), VARS).find("GMPruningModifier").kwargs == {
        "end_epoch": 6
    }
    problems = problems_of(tmp_path, "x: eval(y)\ny: eval(x)\n" + gmp(end_epoch=1))
    assert sorted(p.key.rsplit(":", 1)[-1] for p in problems) == ["x", "y"]
    assert all("not a recipe variable" in p.message for p in problems)


def test_evaluate() -> None:
    assert evaluate("0.1 * n", {"n": 3}) == 0.3  # no 0.30000000000000004
    assert evaluate("min(0.05, s) + max(1, 2) - round(2.6) + abs(-1)", {"s": 0.0}) == 0.0
    for bad in ("open('x')", "n.real", "[1]", "1/0", "2 ** 1000", "n if n else 1"):
        with pytest.raises(ValueError):
            evaluate(bad, {"n": 1})


def test_yaml_reads_exponent_floats(tmp_path: Path) -> None:
    text = "s:\n  training_modifiers:\n    LearningRateFunctionModifier: {init_lr: 5e-4}\n"
    recipe = load_recipe(write(tmp_path, text), VARS)
    assert recipe.learning_rate().kwargs["init_lr"] == 5e-4
