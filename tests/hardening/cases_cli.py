"""The other entry points: `sparsify.run` (the original-style CLI), `sparsify zoo ...` and
`sparsify serve ...` (its start-up refusals; requests are in cases_server.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.hardening.harness import Call, Case, Sandbox, known_bug

Builder = Callable[[Sandbox], Call]


def case(entry: str, id: str, build: Builder, about: str) -> Case:
    return Case(id, entry, build, about, known_bug(f"{entry}:{id}"))


# --- sparsify.run ---------------------------------------------------------------------------


def legacy(
    *args: str, names: tuple[str, ...] = (), data: str = "ic", validate: bool = True
) -> Builder:
    """`sparsify.run one-shot --use-case ic --data <good set> ARGS` ({data}, {inputs} filled)."""

    def build(sb: Sandbox) -> Call:
        root = sb.copy(data, "data")
        fill = {"data": root, "inputs": sb.inputs, "runs": sb.runs}
        argv = [a.format(**fill) for a in args]
        if "--use-case" not in argv:
            argv = ["--use-case", "ic", *argv]
        if "--data" not in argv:
            argv = ["--data", str(root), *argv]
        if not any(
            a in argv for a in ("one-shot", "training-aware", "sparse-transfer", "two-shot")
        ):
            argv = ["one-shot", *argv]
        extra = ["--working-dir", str(sb.runs)]
        if not any(a.startswith("model.arch=") for a in argv):
            extra.append("model.arch=tinynet")
        if validate:
            extra.append("stages=[validate]")
        return Call([*argv, *extra], [n.format(**fill) for n in names])

    return build


LEGACY = [
    ("unknown-experiment", legacy("two-shot", names=("two-shot", "one-shot")), "argparse choice"),
    ("missing-data", lambda sb: Call(["one-shot", "--use-case", "ic"], ["--data"]), "no --data"),
    ("unknown-option", legacy("--frobnicate", "1", names=("--frobnicate",)), "an unknown option"),
    ("level-word", legacy("--optim-level", "high", names=("optim_level", "high")), "a word"),
    ("level-over-100", legacy("--optim-level", "150", names=("optim_level",)), "150"),
    ("level-negative", legacy("--optim-level=-1", names=("optim_level",)), "negative"),
    (
        "impossible-use-case",
        legacy("--use-case", "not a use case!", names=("not a use case!", "cv-classification")),
        "a name Hydra cannot parse",
    ),
    ("data-missing", legacy("--data", "{inputs}/nope", names=("{inputs}/nope",)), "no such folder"),
    ("model-missing", legacy("--model", "{inputs}/nope.pth", names=("model.path",)), "no model"),
    (
        "recipe-missing",
        legacy("--recipe", "{inputs}/r.yaml", names=("{inputs}/r.yaml",)),
        "no recipe file",
    ),
    ("bad-extra-override", legacy("model.arch=resnet19", names=("resnet19",)), "a bad passthrough"),
    ("plus-extra-override", legacy("+foo=1", names=("+foo",)), "an unknown key with +"),
    ("yolo-set-for-ic", legacy(names=("cv-detection",), data="det"), "a YOLO set for ic"),
    (
        "text-set-for-ner",
        legacy("--use-case", "ner", names=("{data}",), data="ic"),
        "an image folder for NER",
    ),
]

CASES: list[Case] = [case("sparsify.run", id, b, about) for id, b, about in LEGACY]


# --- sparsify zoo -----------------------------------------------------------------------------


def zoo(
    *args: str, names: tuple[str, ...], setup: Callable[[Sandbox], None] | None = None
) -> Builder:
    """`sparsify zoo ARGS --zoo-dir <sandbox zoo>` ({inputs}, {zoo} filled)."""

    def build(sb: Sandbox) -> Call:
        if setup:
            setup(sb)
        fill = {"inputs": sb.inputs, "zoo": sb.zoo}
        argv = [a.format(**fill) for a in args]
        if argv and argv[0] in ("list", "show", "add", "remove"):
            argv += ["--zoo-dir", str(sb.zoo)]
        return Call(argv, [n.format(**fill) for n in names])

    return build


def decoy(sb: Sandbox) -> None:
    """A folder beside the zoo that looks like a zoo entry: only the path check saves it."""
    (sb.inputs / "decoy").mkdir()
    (sb.inputs / "decoy" / "zoo.json").write_text("{}")
    (sb.inputs / "decoy" / "model.pth").write_bytes(b"keep me")


def zoo_link_out(sb: Sandbox) -> None:
    decoy(sb)
    (sb.zoo / "evil").symlink_to(sb.inputs / "decoy", target_is_directory=True)


def broken_catalog(sb: Sandbox) -> None:
    (sb.inputs / "catalog.yaml").write_text("models: [name: x\n")


def catalog_entry_bad(sb: Sandbox) -> None:
    (sb.inputs / "catalog.yaml").write_text(json.dumps({"models": [{"name": "x", "tier": "huge"}]}))


ZOO = [
    (
        "remove-parent-path",
        zoo("remove", "../inputs/decoy", names=("../inputs/decoy",), setup=decoy),
        "zoo remove ../decoy deleted folders outside the zoo",
    ),
    (
        "remove-absolute",
        zoo("remove", "{inputs}/decoy", names=("{inputs}/decoy",), setup=decoy),
        "an absolute path",
    ),
    ("remove-root", zoo("remove", "/", names=("'/'",)), "zoo remove /"),
    (
        "remove-link-out",
        zoo("remove", "evil", names=("evil", "outside the zoo"), setup=zoo_link_out),
        "a zoo entry linking outside",
    ),
    ("remove-newline", zoo("remove", "x\n", names=("is not a zoo model name",)), "a newline"),
    (
        "remove-catalog-model",
        zoo("remove", "bert-base-uncased", names=("bert-base-uncased",)),
        "a shipped catalog entry",
    ),
    (
        "show-typo",
        zoo("show", "bert-base-uncasd", names=("bert-base-uncasd", "bert-base-uncased")),
        "a typo, with the close match",
    ),
    ("show-parent-path", zoo("show", "../x", names=("../x",)), "a path for show"),
    (
        "add-not-a-run",
        zoo(
            "add",
            "{inputs}",
            "--name",
            "x",
            "--tier",
            "medium",
            names=("{inputs}", "not a run directory"),
        ),
        "an arbitrary folder",
    ),
    (
        "add-bad-tier",
        zoo("add", "{inputs}", "--name", "x", "--tier", "huge", names=("huge",)),
        "argparse choice",
    ),
    (
        "add-path-name",
        zoo("add", "{inputs}", "--name", "../x", "--tier", "medium", names=("../x",)),
        "a name that is a path",
    ),
    (
        "list-use-case",
        zoo("list", "--use-case", "telepathy", names=("telepathy",)),
        "no such use case",
    ),
    (
        "list-missing-catalog",
        zoo("list", "--catalog", "{inputs}/none.yaml", names=("{inputs}/none.yaml",)),
        "a catalog file that is not there",
    ),
    (
        "list-broken-catalog",
        zoo(
            "list",
            "--catalog",
            "{inputs}/catalog.yaml",
            names=("{inputs}/catalog.yaml",),
            setup=broken_catalog,
        ),
        "a catalog that is not YAML",
    ),
    (
        "list-bad-catalog-entry",
        zoo("list", "--catalog", "{inputs}/catalog.yaml", names=("huge",), setup=catalog_entry_bad),
        "a catalog entry with an unknown tier",
    ),
    ("no-command", zoo(names=("COMMAND",)), "sparsify zoo alone"),
    ("unknown-command", zoo("frobnicate", names=("frobnicate",)), "no such command"),
]
CASES += [case("zoo", id, b, about) for id, b, about in ZOO]


# --- sparsify serve (start-up) ------------------------------------------------------------------


def serve(
    *args: str, names: tuple[str, ...], edit: Callable[[Path], None] | None = None
) -> Builder:
    """`sparsify serve <copy of the tiny deployment> ARGS` ({dep}, {inputs} filled)."""

    def build(sb: Sandbox) -> Call:
        dep = sb.copy("deployment")
        if edit:
            edit(dep)
        fill = {"dep": dep, "inputs": sb.inputs}
        argv = [a.format(**fill) for a in args]
        return Call(argv, [n.format(**fill) for n in names])

    return build


def truncate(name: str) -> Callable[[Path], None]:
    def run(dep: Path) -> None:
        data = (dep / name).read_bytes()
        (dep / name).write_bytes(data[: len(data) // 2])

    return run


SERVE = [
    ("missing-folder", serve("{inputs}/nope", names=("{inputs}/nope",)), "no such folder"),
    ("a-file", serve("{dep}/model.onnx", names=("{dep}/model.onnx",)), "a file, not a folder"),
    (
        "no-config",
        serve("{dep}", names=("{dep}", "config.json"), edit=lambda d: (d / "config.json").unlink()),
        "a folder without config.json",
    ),
    (
        "broken-config",
        serve(
            "{dep}",
            names=("{dep}/config.json",),
            edit=lambda d: (d / "config.json").write_text("{"),
        ),
        "config.json that is not JSON",
    ),
    (
        "unknown-task",
        serve(
            "{dep}",
            names=("telepathy",),
            edit=lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "task": "telepathy"})
            ),
        ),
        "a task with no pipeline",
    ),
    (
        "truncated-model",
        serve("{dep}", names=("{dep}/model.onnx",), edit=truncate("model.onnx")),
        "a truncated model.onnx (was an InvalidProtobuf traceback)",
    ),
    ("port-out-of-range", serve("{dep}", "--port", "70000", names=("70000",)), "port 70000"),
    ("max-batch-zero", serve("{dep}", "--max-batch", "0", names=("--max-batch",)), "batch 0"),
    ("max-body-negative", serve("{dep}", "--max-body-mb", "-1", names=("--max-body-mb",)), "-1 MB"),
    ("unknown-engine", serve("{dep}", "--engine", "tensorrt", names=("tensorrt",)), "engine"),
]
CASES += [case("serve", id, b, about) for id, b, about in SERVE]
