"""Progress bars show on a terminal and stay out of non-interactive logs."""

from __future__ import annotations

import io

import pytest

from sparsify.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert list(progress(range(3), desc="work")) == [0, 1, 2]
    assert err.getvalue() == ""


def test_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    bar = progress(range(3), desc="work")
    assert list(bar) == [0, 1, 2]
    assert "work" in err.getvalue()
