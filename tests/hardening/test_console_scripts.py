"""A few corpus cases through the installed console scripts, as a user runs them: the
entry points behave in a process of their own as they do in-process (exit status, no
traceback, the culprit named, nothing written outside the run dir / cache / zoo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hardening import cases_cli, cases_data, cases_models
from tests.hardening.harness import Case, Sandbox, check_output, outside_writes, snapshot

BIN = Path(sys.executable).parent
# entry -> the console script and the arguments before the case's own
SCRIPTS = {
    "sparsify": ("sparsify", []),
    "sparsify.run": ("sparsify.run", []),
    "zoo": ("sparsify", ["zoo"]),
    "serve": ("sparsify", ["serve"]),
}


def _pick(cases: list[Case], entry: str, id: str) -> Case:
    return next(c for c in cases if c.entry == entry and c.id == id)


PICKED = [
    _pick(cases_data.CASES, "sparsify", "ic-truncated-jpeg"),
    _pick(cases_models.CASES, "sparsify", "model-det-malicious-pt"),
    _pick(cases_cli.CASES, "sparsify.run", "impossible-use-case"),
    _pick(cases_cli.CASES, "zoo", "remove-parent-path"),
    _pick(cases_cli.CASES, "serve", "truncated-model"),
]


@pytest.mark.parametrize("case", [c.param() for c in PICKED])
def test_console_script_refuses_cleanly(case: Case, sandbox: Sandbox) -> None:
    call = case.build(sandbox)
    script, prefix = SCRIPTS[case.entry]
    env = {
        **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        "HOME": str(sandbox.home),
        "SPARSIFY_CACHE": str(sandbox.cache),
    }
    before = snapshot(sandbox)
    proc = subprocess.run(
        [str(BIN / script), *prefix, *call.argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=sandbox.work,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    wrong = check_output(proc.returncode, output, call.names)
    wrong += [f"wrote outside: {w}" for w in outside_writes(before, snapshot(sandbox))]
    assert not wrong, "\n".join(wrong) + f"\n--- output ---\n{output[-4000:]}"
