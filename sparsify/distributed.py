"""Training across processes (torchrun / accelerate launch): every rank helper in one place.

Under a launcher (WORLD_SIZE > 1 in the environment) every process runs the same `sparsify`
command. Rank 0 is the run: it locks and writes the run dir, runs validate and fetch (a dense
baseline too, alone), tells the other ranks what it found (`share`), trains with them, then
exports, benchmarks and packages alone. The other ranks ("followers") receive rank 0's stage
outputs and config, take part in training only (DDP: gradients all-reduced; pruning and QAT
decisions taken on rank 0 or from all-reduced statistics), write only under
`run_dir/ranks/rank-N/`, and exit once training is over. A single process uses none of this.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

# rank 0 may train a dense baseline alone while the others wait in `share`: a long wait is
# normal, so the collectives' timeout is generous (seconds; SPARSIFY_DIST_TIMEOUT_S to change)
DEFAULT_TIMEOUT_S = 4 * 3600
# each rank's hash of its trained model, for checking that ranks agree (tests, debugging)
FINGERPRINT_ENV = "SPARSIFY_RANK_FINGERPRINT"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    """Launched as one of several processes (torchrun, accelerate launch)."""
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def rank_dir(run_dir: Path) -> Path:
    """Where a follower writes (its log, TensorBoard events, trainer scratch)."""
    return run_dir / "ranks" / f"rank-{rank()}"


def refuse_unsupported(family: str, sync_batchnorm: bool = False) -> None:
    """Every rank raises the same error before any collective: nothing hangs."""
    mpi = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
    if not active() and any(int(os.environ.get(k, "1") or 1) > 1 for k in mpi):
        # each process would take itself for the only one and the run dir for its own
        raise SparsifyError(
            "started by mpirun (accelerate launch --cpu with a hostfile): sparsify reads "
            "torchrun's RANK / WORLD_SIZE; launch with torchrun, or accelerate launch --multi_gpu"
        )
    if not active():
        return
    if sync_batchnorm and family == "image_classifier":
        raise SparsifyError(
            "experiment.train.sync_batchnorm=true: torch's SyncBatchNorm runs on CUDA only, and "
            "the image-classifier loop trains on the CPU; leave it false (plain BatchNorm: each "
            "rank normalizes with its own batch, DDP keeps rank 0's running statistics)"
        )
    if family == "yolo":
        raise SparsifyError(
            "cv-detection / cv-segmentation under torchrun: Ultralytics runs its own DDP. "
            "Launch one process (no torchrun / accelerate) with device=0,1 (the GPUs to train "
            "on; Ultralytics starts a worker per GPU); on CPU, YOLO trains in one process"
        )


def init(device: str) -> None:
    """Join the process group: gloo for CPU, NCCL for CUDA (each rank on its LOCAL_RANK GPU)."""
    if not active() or dist.is_initialized():
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = float(os.environ.get("SPARSIFY_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    # with CUDA, CPU tensors (a loop that trains on CPU, object broadcasts) still go by gloo
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    # torchrun stops every worker with SIGTERM when one fails: say so instead of dying mid-write
    if threading.current_thread() is threading.main_thread():
        _previous_sigterm[:] = [signal.signal(signal.SIGTERM, _stopped)]


_previous_sigterm: list[Any] = []


def _stopped(signum: int, frame: Any) -> None:
    # the same lead as rank_failure's: which of the two a user sees is a race with the launcher
    raise RankFailed(
        f"training across {world_size()} processes failed: rank {rank()} was stopped by the "
        f"launcher (SIGTERM){_failed_ranks_note()}"
    )


def shutdown() -> None:
    _shared.clear()
    if _previous_sigterm:
        signal.signal(signal.SIGTERM, _previous_sigterm.pop())
    if dist.is_initialized():
        dist.destroy_process_group()


class RankFailed(SparsifyError):
    """Another rank died or stopped during a collective."""


_failure_dir: list[Path] = []  # run_dir/ranks, where a failing follower leaves its error


def set_failure_dir(run_dir: Path) -> None:
    """Where a follower leaves its error, and its PID and host (rank 0 then sees which rank
    is gone when one is killed without a word); rank 0 reads them there."""
    _failure_dir[:] = [run_dir / "ranks"]
    _failure_dir[0].mkdir(parents=True, exist_ok=True)
    if is_main():
        return
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    (_failure_dir[0] / f"rank-{rank()}.pid").write_text(json.dumps(owner), encoding="utf-8")


def _gone(pid: int, wait_s: float = 2.0) -> bool:
    """No such process on this host, or a zombie its launcher has not reaped yet. A killed
    process closes its sockets (our collective fails) a moment before it is a zombie: wait."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def record_failure(exc: BaseException) -> None:
    """A follower's error, where rank 0 reads it to say which rank failed and why."""
    if not _failure_dir:
        return
    path = _failure_dir[0] / f"rank-{rank()}.error"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")


def _failed_ranks_note() -> str:
    if not _failure_dir or not _failure_dir[0].is_dir():
        return ""
    said = {p.stem: p.read_text(encoding="utf-8").strip() for p in _failure_dir[0].glob("*.error")}
    for path in sorted(_failure_dir[0].glob("rank-*.pid")):
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if path.stem not in said and owner.get("host") == socket.gethostname():
            if _gone(int(owner["pid"])):
                said[path.stem] = f"PID {owner['pid']} ended without an error (killed?)"
    found = "; ".join(f"{n.replace('-', ' ')}: {w}" for n, w in sorted(said.items()))
    return f"; {found}" if found else ""


def collective_failed(exc: BaseException) -> bool:
    """An error from a collective whose peer went away (gloo / NCCL), under a launcher."""
    if not active() or isinstance(exc, SparsifyError):
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset")
    )


def rank_failure(exc: BaseException) -> RankFailed:
    """What rank 0 says when a collective broke: which rank failed, where known."""
    note = _failed_ranks_note()
    who = note[2:] if note else "another rank stopped (killed, out of memory, or crashed)"
    return RankFailed(
        f"training across {world_size()} processes failed: {who}. Each rank's log is in "
        f"run_dir/ranks/rank-N/run.log; torchrun's output names the exit code "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    )


def quiet_console() -> None:
    """A follower's console shows warnings and errors only: rank 0 tells the story once."""
    for handler in logging.getLogger("sparsify").handlers:
        if getattr(handler, "_sparsify", False) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- collectives
_shared: list[bool] = []  # rank 0 has sent its one message to the followers


def share(message: Any = None) -> Any:
    """Rank 0's `message` on every rank (a picklable object). Rank 0 sends exactly one before
    training: {"run_dir", "cfg", "outputs"} to train, or {"run_dir", "stop": why}."""
    box = [message if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    if is_main():
        _shared.append(True)
    return box[0]


def release_followers(run_dir: Path, why: str) -> None:
    """Rank 0, at the end of its run: the followers still waiting for its message stop."""
    if active() and is_main() and dist.is_initialized() and not _shared:
        share({"run_dir": str(run_dir), "stop": why})


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_masks(masks: dict[str, torch.Tensor]) -> None:
    """Rank 0's masks on every rank, in place (bool as uint8: gloo has no bool)."""
    if not dist.is_initialized():
        return
    for name in sorted(masks):
        mask = masks[name]
        buffer = mask.to(torch.uint8)
        dist.broadcast(buffer, src=0)
        masks[name] = buffer.to(mask.dtype)


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` (decisions: channels to remove) on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_(tensors: list[torch.Tensor], op: str = "sum") -> None:
    """Reduce `tensors` in place over the ranks (`sum`, `min` or `max`), in one call."""
    if not dist.is_initialized() or not tensors:
        return
    device = tensors[0].device  # NCCL reduces CUDA tensors: the first one's device for all
    flat = torch.cat([t.reshape(-1).float().to(device) for t in tensors])
    dist.all_reduce(
        flat, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN}.get(op, dist.ReduceOp.MAX)
    )
    start = 0
    for t in tensors:
        t.copy_(flat[start : start + t.numel()].view_as(t).to(t.device))
        start += t.numel()


# --------------------------------------------------------------------------- training
def wrap_ddp(model: nn.Module, device: str) -> nn.Module:
    """`model` in DistributedDataParallel (the same object when not distributed)."""
    if not dist.is_initialized():
        return model
    ids = [torch.cuda.current_device()] if device != "cpu" and torch.cuda.is_available() else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def write_fingerprint(model: nn.Module, run_dir: Path) -> None:
    """With SPARSIFY_RANK_FINGERPRINT=1, this rank's hash of its trained weights and of their
    zero pattern in run_dir/ranks/rank-N.json: ranks that agree wrote the same hashes."""
    if not active() or os.environ.get(FINGERPRINT_ENV) != "1":
        return
    weights, zeros, ranges = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    # parameters, not BatchNorm's running statistics: plain BatchNorm keeps each rank's own
    for name, tensor in sorted(model.named_parameters()):
        data = tensor.detach().cpu().contiguous()
        weights.update(name.encode() + data.numpy().tobytes())
        zeros.update(name.encode() + (data == 0).numpy().tobytes())
    for name, tensor in sorted(model.named_buffers()):
        if name.endswith(("min_val", "max_val")):  # QAT observers' activation ranges
            ranges.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    hashes = {"weights": weights, "zeros": zeros, "qat_ranges": ranges}
    path = run_dir / "ranks" / f"rank-{rank()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: h.hexdigest() for k, h in hashes.items()}))
