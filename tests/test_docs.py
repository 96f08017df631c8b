"""The docs cannot rot: their commands compose and their runnable Python runs.

Every ```bash command in README.md and docs/*.md: `sparsify ...` commands are composed with
`compose_config` (after the same override normalization as the CLI), once per job of a `-m`
sweep; `sparsify.run ...` goes through the legacy CLI's mapping; `sparsify report ...` is
parsed by its own argument parser; `make X` must be a Makefile target; `pip install` lines
are not checked. Anything else fails, so a new kind of command gets a check here.

Every ```python runnable block is executed, in a working directory holding tiny deployment
folders at the paths the docs use (`SANDBOX`) and a few images, so a snippet that disagrees
with the code (a method a result does not have, a result of another type) fails.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from sparsify.cli import report as report_cli
from sparsify.cli import serve as serve_cli
from sparsify.cli import zoo as zoo_cli
from sparsify.cli.legacy_run import build_parser, to_overrides
from sparsify.cli.main import SUBCOMMANDS
from sparsify.config import compose_config
from sparsify.context import RunContext
from sparsify.fileio import atomic_write_json
from sparsify.models import get_family
from sparsify.models.classifier.model import build_model
from sparsify.stages.package import deployment_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"^```python runnable\n(.*?)^```", re.S | re.M)
# flags of the `sparsify` command that do not change what composes
NO_VALUE_FLAGS = {"-m", "--multirun", "--resolve", "--help", "-h", "--hydra-help"}
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p"}


def commands(path: Path) -> list[str]:
    """The commands of every bash block of `path`, continuation lines joined."""
    found = []
    for block in FENCE.findall(path.read_text(encoding="utf-8")):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                found.append(command.strip())
    return found


CASES = [
    pytest.param(doc, i, cmd, id=f"{doc.name}:{i}")
    for doc in DOCS
    for i, cmd in enumerate(commands(doc))
]


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of every job a `-m` run over `overrides` would launch."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def split_flags(args: list[str]) -> tuple[list[str], str | None]:
    """(overrides, config dir) of a `sparsify` command line."""
    overrides, config_dir, it = [], None, iter(args)
    for arg in it:
        if arg in NO_VALUE_FLAGS:
            continue
        if arg in VALUE_FLAGS:
            next(it)
        elif arg in ("--config-dir", "-cd"):
            config_dir = next(it)
        elif arg.startswith("-"):
            raise AssertionError(f"flag {arg} is not known to this test; add it")
        else:
            overrides.append(arg)
    return overrides, config_dir


def check_sparsify(args: list[str]) -> None:
    overrides, config_dir = split_flags(args)
    jobs = sweep_jobs(overrides) if any(a in ("-m", "--multirun") for a in args) else [overrides]
    assert jobs, "a sweep without jobs"
    for job in jobs:
        compose_config(job, config_dir=config_dir)


def check_benchmark(script: str, args: list[str]) -> None:
    """A documented benchmark command parses with the script's own argument parser."""
    path = ROOT / script
    assert path.is_file(), f"no benchmark script {script}"
    spec = importlib.util.spec_from_file_location(f"_doc_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "build_parser"):
        module.build_parser().parse_args(args)
    else:
        module.parse_args(args)


def check_launcher(program: str, args: list[str]) -> None:
    """A torchrun / accelerate launch command (docs/distributed.md): the launcher's own parser
    takes its options, it launches sparsify, and sparsify's overrides compose ("..." stands for
    the rest of the user's overrides)."""
    if program == "torchrun":
        from torch.distributed.run import get_args_parser

        parsed = get_args_parser().parse_args(args)
    else:
        from accelerate.commands.launch import launch_command_parser

        assert args[0] == "launch", "accelerate launch ..."
        parsed = launch_command_parser().parse_args(args[1:])
    assert parsed.training_script == "sparsify", parsed.training_script
    check_sparsify([a for a in parsed.training_script_args if a != "..."])


def check_make(target: str) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no make target {target}"


@pytest.mark.parametrize(("doc", "index", "command"), CASES)
def test_documented_command(doc: Path, index: int, command: str) -> None:
    argv = shlex.split(command, comments=True)
    program = Path(argv[0]).name
    if program == "make":
        for target in argv[1:]:
            check_make(target)
    elif program == "pip" or argv[:3] == ["python", "-m", "pip"]:
        pytest.skip("installation command")
    elif program == "sparsify.run":
        compose_config(to_overrides(build_parser().parse_intermixed_args(argv[1:])))
    elif program == "sparsify" and len(argv) > 1 and argv[1] in SUBCOMMANDS:
        parsers = {
            "report": report_cli.build_parser,
            "serve": serve_cli.parser,
            "zoo": zoo_cli.build_parser,
        }
        parsers[argv[1]]().parse_args(argv[2:])
    elif program == "sparsify":
        check_sparsify(argv[1:])
    elif program.startswith("python") and len(argv) > 1 and argv[1].startswith("benchmarks/"):
        check_benchmark(argv[1], argv[2:])
    elif program in ("torchrun", "accelerate"):
        check_launcher(program, argv[1:])
    elif program == "ray":
        # Ray's own CLI (docs/sweeps.md): its flags are Ray's; the cluster extra must ship it
        assert shutil.which("ray", path=str(Path(sys.executable).parent)), "ray is not installed"
    else:
        raise AssertionError(f"{doc.name}: no check for `{command}`; add one to this test")


def test_the_docs_have_commands() -> None:
    assert len(CASES) > 10
    names = {p.values[0].name for p in CASES}
    assert {"README.md", "sweeps.md"} <= names


def test_a_wrong_command_does_not_compose() -> None:
    with pytest.raises(Exception, match="optim_levle"):
        check_sparsify(["-m", "optim_levle=0.5,1.0"])
    with pytest.raises(Exception, match="no_such_launcher"):
        check_sparsify(["-m", "hydra/launcher=no_such_launcher", "optim_level=0.5"])
    assert len(sweep_jobs(["optim_level=0.0,0.5", "experiment=one_shot,training_aware"])) == 4


# -- runnable Python ------------------------------------------------------------------------

# deployment folders the runnable snippets load, by the path they use
CLASSIFIER_DIR = "sparsify_runs/one_shot_cv-classification/RUN/deployment"
NLP_DIRS = {
    "nlp-sentiment_analysis": "sparsify_runs/one_shot_nlp-sentiment_analysis/RUN/deployment",
    "nlp-question_answering": "sparsify_runs/one_shot_nlp-question_answering/RUN/deployment",
}
IMAGES = ("cat.jpg", "a.jpg", "b.jpg")
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
LABELS = ["cat", "dog", "fox"]  # three, so the docs' top_k=3 is allowed


def snippets(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python runnable block of `path`."""
    text = path.read_text(encoding="utf-8")
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in RUNNABLE.finditer(text)]


SNIPPETS = [
    pytest.param(doc, line, code, id=f"{doc.name}:{line}")
    for doc in DOCS
    for line, code in snippets(doc)
]


def classifier_deployment(out: Path) -> Path:
    """A random-init tinynet at 16 px, exported and packaged by the family and the package
    stage's own functions: the Pipeline's return types, not the model's quality, are tested."""
    import torch

    cfg = compose_config(
        ["use_case=cv-classification", "model.arch=tinynet", "data.image_size=16"]
        + ["data.resize_size=16"]
    )
    ctx = RunContext(cfg=cfg, run_dir=out.parent / "run")
    ctx.outputs["validate"] = {"data_path": str(out.parent), "data": {"classes": LABELS}}
    family = get_family("image_classifier")
    torch.manual_seed(0)
    out.mkdir(parents=True)
    family.export(build_model("tinynet", len(LABELS)).eval(), out / "model.onnx", ctx)
    part = family.deployment_files(ctx, out)
    config = deployment_config(
        out / "model.onnx", "image-classification", "cv-classification", part, experiment="none"
    )
    atomic_write_json(out / "config.json", config)
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with the deployment folders and images the snippets name."""
    from PIL import Image

    root = tmp_path_factory.mktemp("docs_sandbox")
    classifier_deployment(root / CLASSIFIER_DIR)
    rng = np.random.default_rng(0)
    for name in IMAGES:
        pixels = rng.integers(0, 256, size=(20, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
    if not HAS_TRANSFORMERS:
        return root  # the snippets that load a text deployment skip
    from tests.deploy.builders import nlp_deployment

    for use_case, target in NLP_DIRS.items():
        built = nlp_deployment(tmp_path_factory.mktemp(use_case), use_case)
        shutil.copytree(built, root / target)
    return root


@pytest.mark.parametrize(("doc", "line", "code"), SNIPPETS)
def test_runnable_snippet(
    doc: Path, line: int, code: str, sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HAS_TRANSFORMERS and any(path in code for path in NLP_DIRS.values()):
        pytest.skip("transformers not installed (pip install 'sparsify[nlp]')")
    monkeypatch.chdir(sandbox)
    # a compiled code object named after the doc, so a traceback points at its line
    exec(compile("\n" * (line - 1) + code, str(doc), "exec"), {"__name__": "__docs__"})


def test_the_docs_have_runnable_snippets() -> None:
    names = {p.values[0].name for p in SNIPPETS}
    assert "deployment.md" in names


def test_a_wrong_snippet_fails(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/deployment.md once said: `to_dict()` on the result of `top_k=3`."""
    monkeypatch.chdir(sandbox)
    wrong = (
        "from sparsify.deploy import Pipeline\n"
        f"Pipeline({CLASSIFIER_DIR!r})('cat.jpg', top_k=3).to_dict()\n"
    )
    with pytest.raises(AttributeError, match="to_dict"):
        exec(compile(wrong, "wrong", "exec"), {})
