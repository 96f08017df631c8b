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


def test_logged_progress_reports_count_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from sparsify.progress import logged_progress

    ticks = iter([0.0, 5.0, 20.0, 30.0, 40.0])  # start, then after each of 4 items
    logger = logging.getLogger("sparsify")
    with caplog.at_level(logging.INFO, logger="sparsify"):
        items = list(logged_progress(range(4), 4, "layers", logger, 10.0, lambda: next(ticks)))
    assert items == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    # nothing after 5 s; at 20 s 2 of 4 done (ETA 20 s); then at 30 s; then the last item
    assert lines == [
        "layers: 2/4 done, 20 s elapsed, ETA 20 s",
        "layers: 3/4 done, 30 s elapsed, ETA 10 s",
        "layers: 4/4 done, 40 s elapsed, ETA 0 s",
    ]
