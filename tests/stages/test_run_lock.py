"""One process per run dir: a live holder refuses a second run, a dead one's lock is taken over."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sparsify
from sparsify.errors import SparsifyError
from sparsify.run_lock import LOCK_NAME, RunLock, build_lock

ROOT = Path(__file__).resolve().parents[2]

# a second process that takes the run dir's lock, says so, and holds it until killed
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sparsify.run_lock import RunLock
    with RunLock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_run_refuses_a_second_sparsify_run(tiny_run: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    in_progress = run_dir / "sparsify" / "partial.onnx"
    in_progress.parent.mkdir(parents=True)
    in_progress.write_bytes(b"the first run's work")
    holder = _holder(run_dir)
    try:
        with pytest.raises(SparsifyError) as err:
            sparsify.run(tiny_run, run_dir=run_dir)
        message = str(err.value)
        assert f"PID {holder.pid}" in message and str(run_dir) in message
        assert in_progress.read_bytes() == b"the first run's work"  # nothing redone or deleted
        assert not (run_dir / "manifest.json").exists() and not (run_dir / "run.log").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock_file = tmp_path / LOCK_NAME
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # left behind
    with RunLock(tmp_path) as lock:
        assert lock.stale is not None and lock.stale.pid == holder.pid
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_the_lock_is_released_on_errors_and_ctrl_c(tmp_path: Path, error: type) -> None:
    with pytest.raises(error), RunLock(tmp_path):
        raise error("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path) as lock:  # free again, and nothing stale
        assert lock.stale is None


def test_the_same_process_cannot_take_it_twice(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(SparsifyError, match=f"PID {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_a_lock_file_from_another_host_is_not_guessed_at(tmp_path: Path) -> None:
    other = {"pid": 4242, "host": socket.gethostname() + "-other", "started_at": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(SparsifyError, match="delete the file"):
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == other


def test_a_run_takes_over_a_stale_lock_and_says_so(tiny_run: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = _dead_pid()
    stale = {"pid": dead, "host": socket.gethostname(), "started_at": "2020-01-01T00:00:00"}
    (run_dir / LOCK_NAME).write_text(json.dumps(stale))
    result = sparsify.run([*tiny_run, "stages=[validate]"], run_dir=run_dir)
    assert result.status == "done", result.error
    log = (run_dir / "run.log").read_text()
    assert f"Took over the lock of PID {dead} on {socket.gethostname()}" in log
    assert not (run_dir / LOCK_NAME).exists()


def test_a_filesystem_without_locks_is_named_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("sparsify.run_lock.fcntl.flock", no_locks)
    with RunLock(tmp_path) as lock:
        assert lock.unsupported == f"{tmp_path} cannot be locked (No locks available)"
    assert not (tmp_path / LOCK_NAME).exists()


def test_build_lock_makes_a_second_builder_wait_then_find_the_result(tmp_path: Path) -> None:
    """Two processes needing the same cached baseline: the second waits on the lock (logging
    who holds it) and then sees the first one's finished file instead of building over it."""
    lock, built, started = tmp_path / "b.lock", tmp_path / "built.txt", tmp_path / "started"
    holder = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from sparsify.run_lock import build_lock
        with build_lock(Path({str(lock)!r}), "the thing"):
            Path({str(started)!r}).write_text("1")
            time.sleep(1.5)
            Path({str(built)!r}).write_text("first")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        for _ in range(200):
            if started.exists():
                break
            time.sleep(0.05)
        assert started.exists(), "the first builder never took the lock"

        class Log:
            lines: list[str] = []

            def info(self, fmt: str, *args: object) -> None:
                self.lines.append(fmt % args)

        log = Log()
        with build_lock(lock, "the thing", log):
            assert built.read_text() == "first"  # waited for it
        assert log.lines and f"Waiting for PID {proc.pid}" in log.lines[0]
    finally:
        proc.wait(timeout=30)
    with build_lock(lock, "the thing", log):  # free again: no wait
        pass
    assert len(log.lines) == 1
