"""The bad-input corpus (issue 21): every case is refused with a non-zero exit status, no
traceback, a message naming the file / key / value at fault, and nothing written outside the
run dir, the cache and the zoo. Cases run in-process through the console scripts' entry
functions (test_console_scripts.py runs a few as real processes)."""

from __future__ import annotations

import pytest

from tests.hardening import (
    cases_cli,
    cases_config,
    cases_data,
    cases_models,
    cases_recipes,
    cases_text,
)
from tests.hardening.harness import Case, Sandbox, check_output, invoke, outside_writes, snapshot

CASES: list[Case] = [
    *cases_data.CASES,
    *cases_text.CASES,
    *cases_config.CASES,
    *cases_models.CASES,
    *cases_recipes.CASES,
    *cases_cli.CASES,
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_refused_cleanly(
    case: Case,
    sandbox: Sandbox,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = case.build(sandbox)
    before = snapshot(sandbox)
    code = invoke(case.entry, call.argv, monkeypatch)
    out, err = capfd.readouterr()
    wrong = check_output(code, out + err, call.names)
    wrong += [
        f"wrote outside the run dir / cache / zoo: {w}"
        for w in outside_writes(before, snapshot(sandbox))
    ]
    assert not wrong, f"{case.about}\n" + "\n".join(wrong) + f"\n--- output ---\n{out}{err}"[-4000:]


def test_ids_are_unique() -> None:
    ids = [f"{c.entry}:{c.id}" for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
