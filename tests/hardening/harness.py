"""The corpus' machinery: a sandbox per case, the entry points run in-process, and the checks
every case must pass (non-zero exit, no traceback, the culprit named, nothing written outside
the run dir / cache / zoo)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.hardening.assets import copy_asset

# the places a run may write; everything else under the sandbox must be left as it was
ALLOWED = ("runs", "cache", "zoo")
# the places that must not change: HOME, the working directory, the user's input files
WATCHED = ("home", "work", "inputs")


@dataclass(frozen=True)
class Sandbox:
    """One case's world: HOME, cwd, SPARSIFY_CACHE and the zoo dir all under `root`."""

    root: Path
    assets: Path  # the session's good inputs (assets.py), never written by a case

    def copy(self, asset: str, name: str | None = None) -> Path:
        """A private copy of a good input under inputs/, for the case to break."""
        return copy_asset(self.assets, asset, self.inputs / (name or asset))

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def zoo(self) -> Path:
        return self.root / "zoo"

    @property
    def run_dir(self) -> Path:
        return self.runs / "run"

    def validate_only(self) -> list[str]:
        """Overrides that keep a `sparsify` case in its run dir and stop after validate."""
        return [f"run_dir={self.run_dir}", "stages=[validate]"]

    def make(self) -> None:
        for name in (*ALLOWED, *WATCHED):
            (self.root / name).mkdir(parents=True, exist_ok=True)


# cases that show a bug not fixed here (its code is being changed by someone else, or the
# fix is not small): "entry:id" -> what is wrong. They run as strict xfails, so a fix turns
# them into failures until the entry is removed.
KNOWN_BUGS: dict[str, str] = {}


def known_bug(case: str) -> tuple[pytest.MarkDecorator, ...]:
    reason = KNOWN_BUGS.get(case)
    return (pytest.mark.xfail(strict=True, reason=reason),) if reason else ()


@dataclass(frozen=True)
class Call:
    """What a case runs (argv of its entry point) and what the message must name."""

    argv: list[str]
    names: list[str]


@dataclass(frozen=True)
class Case:
    """One bad input. `entry`: sparsify | sparsify.run | zoo | serve (the `sparsify serve`
    command; server requests are ServerCase). `build` writes the inputs and returns the call."""

    id: str
    entry: str
    build: Callable[[Sandbox], Call]
    # why it is refused, one line (what a reader of a failure wants to know first)
    about: str = ""
    marks: tuple[pytest.MarkDecorator, ...] = field(default_factory=tuple)

    def param(self) -> object:
        return pytest.param(self, id=f"{self.entry}:{self.id}", marks=self.marks)


def snapshot(sandbox: Sandbox) -> dict[str, tuple[str, int, int]]:
    """Every path under the watched places -> (kind, size, mtime_ns)."""
    seen: dict[str, tuple[str, int, int]] = {}
    for name in WATCHED:
        top = sandbox.root / name
        for path in [top, *top.rglob("*")]:
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            size = 0 if kind == "dir" else st.st_size
            seen[str(path.relative_to(sandbox.root))] = (kind, size, st.st_mtime_ns)
    return seen


def outside_writes(
    before: dict[str, tuple[str, int, int]], after: dict[str, tuple[str, int, int]]
) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(
        k for k in set(before) & set(after) if before[k] != after[k] and before[k][0] != "dir"
    )
    return [f"+{p}" for p in added] + [f"-{p}" for p in removed] + [f"~{p}" for p in changed]


def invoke(entry: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run an entry point in-process as its console script would; returns the exit status."""
    monkeypatch.setattr(sys, "argv", [entry, *argv])  # Hydra reads (and main rewrites) it
    try:
        if entry == "sparsify":
            from sparsify.cli.main import main

            main(argv)
            return 0
        if entry == "sparsify.run":
            from sparsify.cli.legacy_run import main as legacy_main

            return legacy_main(argv)
        if entry in ("zoo", "serve"):
            from sparsify.cli.main import main

            main([entry, *argv])
            return 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception:  # noqa: BLE001 - what the console script would show: a traceback, exit 1
        traceback.print_exc()
        return 1
    raise ValueError(f"unknown entry {entry!r}")


def check_output(code: int, output: str, names: list[str]) -> list[str]:
    """What is wrong with a refusal: exit 0, a traceback, a culprit not named."""
    wrong = []
    if code == 0:
        wrong.append("exit status 0 (accepted silently)")
    if "Traceback" in output:
        wrong.append("a traceback in the output")
    wrong += [f"the message does not name {n!r}" for n in names if n not in output]
    return wrong
