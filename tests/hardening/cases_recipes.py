"""Recipes: unknown modifiers and fields, bad values, bad YAML, eval() abuse, missing files.
Each recipe file is the only fault of a validate-only run on the good image folder."""

from __future__ import annotations

from tests.hardening.harness import Call, Case, Sandbox, known_bug

HEAD = "version: 1.1.0\noneshot_stage:\n  pruning_modifiers:\n"
GOOD = "    MagnitudePruningModifier:\n      targets: __ALL_PRUNABLE__\n      final_sparsity: 0.5\n"


def pruning(fields: str, name: str = "MagnitudePruningModifier") -> str:
    """A one-shot recipe with one pruning modifier holding `fields` (YAML, 6 spaces in)."""
    return f"{HEAD}    {name}:\n{fields}"


def recipe_case(
    id: str,
    text: str | bytes | None,
    names: list[str],
    about: str,
    recipe: str | None = None,
    extra: tuple[str, ...] = (),
) -> Case:
    """`recipe=<inputs/recipe.yaml holding text>` (or `recipe=<recipe>` as given)."""

    def build(sb: Sandbox) -> Call:
        data = sb.copy("ic", "data")
        path = sb.inputs / "recipe.yaml"
        if text is not None:
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        value = recipe.format(inputs=sb.inputs) if recipe else str(path)
        if value.endswith("dir.yaml"):
            (sb.inputs / "dir.yaml").mkdir()
        argv = ["model.arch=tinynet", f"data.path={data}", f"recipe={value}", *extra]
        shown = [n.format(path=path, inputs=sb.inputs) for n in names]
        return Call([*argv, *sb.validate_only()], shown)

    case_id = f"recipe-{id}"
    return Case(case_id, "sparsify", build, about, known_bug(f"sparsify:{case_id}"))


R = "{path}"  # the recipe file, as named in messages
RECIPES: list[tuple[str, str | bytes | None, list[str], str]] = [
    (
        "unknown-modifier",
        pruning(GOOD[30:], "MagicPruningModifier"),
        ["MagicPruningModifier"],
        "no such modifier",
    ),
    (
        "misspelt-modifier",
        pruning(GOOD[30:], "MagnitudePruningModifer"),
        ["MagnitudePruningModifer", "MagnitudePruningModifier"],
        "a typo, with the close match",
    ),
    (
        "unknown-field",
        pruning(GOOD[30:] + "      sparsity_pattern: 2:4\n"),
        ["sparsity_pattern"],
        "a field the modifier does not have",
    ),
    (
        "sparsity-over-1",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: 1.5\n"),
        ["final_sparsity", "1.5"],
        "150 % sparse",
    ),
    (
        "sparsity-word",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: lots\n"),
        ["final_sparsity", "lots"],
        "a word for a number",
    ),
    (
        "mask-type",
        pruning(GOOD[30:] + "      mask_type: diagonal\n"),
        ["mask_type", "diagonal"],
        "no such mask",
    ),
    (
        "targets-number",
        pruning("      targets: 42\n      final_sparsity: 0.5\n"),
        ["targets"],
        "a number as targets",
    ),
    (
        "fields-not-mapping",
        pruning("      - final_sparsity\n"),
        ["MagnitudePruningModifier"],
        "a list where the fields go",
    ),
    (
        "gmp-end-before-start",
        "version: 1.1.0\ntrain_stage:\n  pruning_modifiers:\n"
        "    GMPruningModifier:\n      init_sparsity: 0.05\n      final_sparsity: 0.5\n"
        "      start_epoch: 5.0\n      end_epoch: 1.0\n      update_frequency: 1.0\n",
        ["end_epoch"],
        "pruning ends before it starts",
    ),
    (
        "quant-unknown-field",
        f"{HEAD}{GOOD}  quantization_modifiers:\n    QuantizationModifier:\n      bits: 3\n",
        ["bits"],
        "a quantization field that does not exist",
    ),
    ("yaml-tab", f"{HEAD}\tMagnitudePruningModifier:\n", [R], "a tab in the indentation"),
    (
        "yaml-unclosed",
        f"{HEAD}    MagnitudePruningModifier: {{final_sparsity: 0.5\n",
        [R],
        "an unclosed flow mapping",
    ),
    (
        "yaml-list",
        "- MagnitudePruningModifier\n- QuantizationModifier\n",
        [R],
        "a list, not a mapping",
    ),
    ("empty-file", "", [R], "an empty recipe"),
    ("only-version", "version: 1.1.0\n", [R], "no modifiers at all"),
    ("binary", bytes(range(256)), [R], "binary bytes named .yaml"),
    (
        "eval-import",
        pruning(
            "      targets: __ALL_PRUNABLE__\n"
            "      final_sparsity: eval(__import__('os').getpid())\n"
        ),
        ["final_sparsity"],
        "eval() reaching for Python",
    ),
    (
        "eval-undefined",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: eval(x * 2)\n"),
        ["final_sparsity", "x"],
        "eval() of an unknown variable",
    ),
    (
        "eval-divide-by-zero",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: eval(1 / 0)\n"),
        ["final_sparsity"],
        "eval() dividing by zero",
    ),
    (
        "eval-huge-power",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: eval(10 ** 10 ** 10)\n"),
        ["final_sparsity"],
        "eval() of 10**10**10",
    ),
    (
        "interpolation",
        pruning("      targets: __ALL_PRUNABLE__\n      final_sparsity: ${nope.x}\n"),
        [R, "nope"],
        "${...} to a key that does not exist",
    ),
    (
        "sparseml-unknown-tag",
        "modifiers:\n  - !MagicModifier\n    final_sparsity: 0.5\n",
        ["MagicModifier"],
        "SparseML list style with an unknown tag",
    ),
]

CASES: list[Case] = [recipe_case(id, text, names, about) for id, text, names, about in RECIPES]
CASES += [
    recipe_case(
        "missing-file",
        None,
        ["{inputs}/nope.yaml"],
        "a recipe file that is not there",
        recipe="{inputs}/nope.yaml",
    ),
    recipe_case(
        "unknown-builtin",
        None,
        ["one_shoot", "one_shot"],
        "a built-in name typo",
        recipe="one_shoot",
    ),
    recipe_case(
        "a-folder", None, ["{inputs}/dir.yaml"], "a folder named .yaml", recipe="{inputs}/dir.yaml"
    ),
    recipe_case(
        "unknown-recipe-arg",
        None,
        ["recipe_args", "num_epoks"],
        "a recipe variable the recipe does not define",
        recipe="training_aware",
        extra=("experiment=training_aware", "+recipe_args.num_epoks=3"),
    ),
]
