"""The corpus' controls: the good inputs it breaks pass validation through the same harness
(so each refusal comes from the one fault a case makes), and the harness' checks catch what
they are meant to catch."""

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
from tests.hardening.cases_data import KINDS, validate_args
from tests.hardening.cases_models import Payload
from tests.hardening.cases_server import CASES as SERVER_CASES
from tests.hardening.harness import Sandbox, check_output, invoke, outside_writes, snapshot


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_unbroken_input_passes(
    kind: str, sandbox: Sandbox, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sandbox.copy(KINDS[kind][0], "data")
    argv = validate_args(sandbox, kind, data)
    before = snapshot(sandbox)
    code = invoke("sparsify", argv, monkeypatch)
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "Traceback" not in out + err
    assert outside_writes(before, snapshot(sandbox)) == []


def test_the_checks_catch_what_they_should(sandbox: Sandbox) -> None:
    assert check_output(0, "fine", []) == ["exit status 0 (accepted silently)"]
    assert check_output(1, "Traceback (most recent call last):", []) == [
        "a traceback in the output"
    ]
    assert check_output(2, "data.path: missing", ["data.path", "train.csv"]) == [
        "the message does not name 'train.csv'"
    ]
    before = snapshot(sandbox)
    (sandbox.home / ".config").mkdir()
    (sandbox.inputs / "seen").write_text("x")
    (sandbox.runs / "allowed").write_text("x")  # the run dir, cache and zoo may be written
    (sandbox.cache / "allowed").write_text("x")
    assert outside_writes(before, snapshot(sandbox)) == ["+home/.config", "+inputs/seen"]


def test_the_payload_would_be_seen(sandbox: Sandbox) -> None:
    """A model file's payload, were it unpickled, writes into the watched working dir."""
    import pickle

    before = snapshot(sandbox)
    pickle.loads(pickle.dumps(Payload(sandbox.work / "pwned"))).close()
    assert outside_writes(before, snapshot(sandbox)) == ["+work/pwned"]


def test_the_corpus_is_large_enough() -> None:
    sparsify_side = [
        *cases_data.CASES,
        *cases_text.CASES,
        *cases_config.CASES,
        *cases_models.CASES,
        *cases_recipes.CASES,
        *cases_cli.CASES,
    ]
    assert len(sparsify_side) + len(SERVER_CASES) >= 150
    entries = {c.entry for c in sparsify_side}
    assert entries == {"sparsify", "sparsify.run", "zoo", "serve"}
