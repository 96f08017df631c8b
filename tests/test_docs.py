"""Every ```bash command in README.md and docs/*.md still composes, so the docs cannot rot.

`sparsify ...` commands are composed with `compose_config` (after the same override
normalization as the CLI), once per job of a `-m` sweep; `sparsify.run ...` goes through
the seed CLI's mapping; `sparsify report ...` is parsed by its own argument parser; `make X`
must be a Makefile target; `pip install` lines are not checked. Anything else fails, so a
new kind of command gets a check here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from sparsify.cli import report as report_cli
from sparsify.cli import serve as serve_cli
from sparsify.cli import zoo as zoo_cli
from sparsify.cli.legacy_run import build_parser, to_overrides
from sparsify.cli.main import SUBCOMMANDS
from sparsify.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
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
