"""One process per run directory: a lock file holding the owner's PID, host and start time.

Two runs in one run_dir used to clobber each other (the second emptied and redid the first's
in-progress sparsify/ folder). The lock is an `fcntl.flock` on `run_dir/.sparsify.lock`: the
kernel drops it when its process dies however it dies, so a lock file left by a killed run is
taken over (with a log line naming who left it), while one held by a live process refuses with
an error naming that process and the directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sparsify.errors import SparsifyError

LOCK_NAME = ".sparsify.lock"


@dataclass
class StaleLock:
    """What the lock file said about a run that is gone (it left the file behind)."""

    pid: int | None
    host: str | None
    started_at: str | None

    def describe(self) -> str:
        return f"PID {self.pid} on {self.host}, started {self.started_at}"


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _busy(run_dir: Path, owner: dict[str, Any]) -> SparsifyError:
    who = (
        f"PID {owner.get('pid')} on {owner.get('host')} (started {owner.get('started_at')})"
        if owner.get("pid")
        else "another process (it is just starting)"
    )
    return SparsifyError(
        f"run_dir {run_dir} is in use by {who}; wait for that run to finish or stop it, or "
        "give this run another run_dir"
    )


class RunLock:
    """`with RunLock(run_dir) as lock:` holds the run dir for this process; `lock.stale` says
    whose leftover lock file was taken over (None when there was none); `lock.unsupported`
    says why the run dir could not be locked (a filesystem without flock), else None."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_NAME
        self.stale: StaleLock | None = None
        self.unsupported: str | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(self.run_dir, _read_owner(self.path)) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                # some network filesystems cannot lock: the run goes on unguarded, and says so
                self.path.unlink(missing_ok=True)
                self.unsupported = f"{self.run_dir} cannot be locked ({exc.strerror})"
                return self
            except BaseException:
                os.close(fd)
                raise
            # a releasing owner unlinks the file: a lock on that unlinked inode holds nothing,
            # so check we locked the file that is at the path now, else try again
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_owner(self.path)
        if previous.get("pid") or previous.get("host"):
            self.stale = StaleLock(
                previous.get("pid"), previous.get("host"), previous.get("started_at")
            )
            other_host = previous.get("host") not in (None, socket.gethostname())
            if other_host:
                # flock is not shared between hosts on every network filesystem: a run on
                # another machine may still be live, and this host cannot check its PID
                os.close(fd)
                raise SparsifyError(
                    f"run_dir {self.run_dir} holds the lock file of {self.stale.describe()} "
                    f"({self.path}); if that run is over, delete the file and run again"
                )
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while still holding it, so nobody locks the file we are about to let go of
        # without `acquire` noticing (it compares inodes)
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextmanager
def build_lock(path: Path, what: str, log: Any = None) -> Iterator[None]:
    """Hold an exclusive `fcntl.flock` on `path` while something shared (a cached dense
    baseline) is checked and built: a second process that needs the same thing - a parallel
    sweep's other trial - waits, with a log line, and then finds it built instead of building
    it again over the first one's files. The kernel drops the lock when its holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            owner = _read_owner(path)
            if log is not None:
                log.info(
                    "Waiting for PID %s, which is preparing %s",
                    owner.get("pid", "?"),
                    what,
                )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
