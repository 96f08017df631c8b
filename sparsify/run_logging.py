"""Where a run's messages go: sparsify's to the console and run.log, third-party chatter to
run.log only. The one place logging is configured.

Third-party chatter (Hugging Face load reports, torch TracerWarnings, ONNX Runtime's quantizer
advice) buried what matters on the console. During a run:
- the loggers of LIBRARY_LOGGERS and the root logger (where ONNX Runtime's quantizer and
  `warnings` end up) also write to run.log, and their console handlers are muted;
- `warnings` go through logging (`logging.captureWarnings`), so into run.log;
- ONNX Runtime's C++ logger shows errors only: its warnings (e.g. "Removing initializer ... not
  used by any node" on every load of a transformer) are printed straight to stderr by C++ code,
  where Python cannot route them; they never change a result.
Libraries configure their loggers when they are imported, which happens mid-run (inside a
stage), so the muting must also catch console handlers added later: a library logger's class
becomes `_LibraryLogger`, whose `addHandler` mutes a console handler as it is added. Outside a
run the mute filter and the run.log handler do nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

# library root loggers whose console output is chatter during a run
LIBRARY_LOGGERS = (
    "transformers",
    "ultralytics",
    "onnxruntime",
    "onnx",
    "torch",
    "accelerate",
    "huggingface_hub",
    "datasets",
    "py.warnings",
)
# ONNX Runtime log severities: 2 = warning (its default), 3 = error
ORT_ERRORS_ONLY = 3

_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"
_THIRD_PARTY_FORMAT = "[%(asctime)s][%(levelname)s][%(name)s] %(message)s"
_active: list[logging.Handler] = []  # the current run's run.log handler (a stack: nested runs)


class _RunLogFormatter(logging.Formatter):
    """sparsify's lines as they are; a third-party line says which library it came from."""

    def __init__(self) -> None:
        super().__init__(_FORMAT, "%H:%M:%S")
        self._third_party = logging.Formatter(_THIRD_PARTY_FORMAT, "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "sparsify" or record.name.startswith("sparsify."):
            return super().format(record)
        return self._third_party.format(record)


class _ToRunLog(logging.Handler):
    """Hands a record to the active run's run.log (once: a record propagating from a library
    logger to the root reaches this handler twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        if _active and not getattr(record, "_sparsify_run_log", False):
            record._sparsify_run_log = True  # type: ignore[attr-defined]
            _active[-1].handle(record)


class _MutedDuringRun(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _active


_TO_RUN_LOG = _ToRunLog()
_MUTED = _MutedDuringRun()


def _is_console(handler: logging.Handler) -> bool:
    """A handler printing to the terminal (not a file, not a test's capture handler)."""
    if type(handler) is logging.StreamHandler:
        return True
    stream = getattr(handler, "stream", None)
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return not isinstance(handler, logging.FileHandler) and any(stream is s for s in consoles)


class _LibraryLogger(logging.Logger):
    """A library's root logger: console handlers it adds are muted while a run is active."""

    def addHandler(self, hdlr: logging.Handler) -> None:  # noqa: N802 - logging's name
        if _is_console(hdlr):
            hdlr.addFilter(_MUTED)
        super().addHandler(hdlr)


def _adopt_library_loggers() -> None:
    """Route LIBRARY_LOGGERS to run.log and mute their console handlers (idempotent)."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if type(logger) is logging.Logger:
            logger.__class__ = _LibraryLogger
        for handler in logger.handlers:
            if _is_console(handler):
                handler.addFilter(_MUTED)
        if _TO_RUN_LOG not in logger.handlers:
            logger.addHandler(_TO_RUN_LOG)


def _quiet_onnxruntime() -> None:
    """ONNX Runtime's C++ logger: errors only (see the module docstring)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(ORT_ERRORS_ONLY)


def _quiet_progress_bars() -> None:
    """Hugging Face's progress bars off where the library is already imported (for a later
    import, HF_HUB_DISABLE_PROGRESS_BARS does it: `sparsify.environment`)."""
    hub = sys.modules.get("huggingface_hub")
    if hub is not None:
        hub.utils.disable_progress_bars()
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is not None:
        hf_logging.disable_progress_bar()


def setup_logging(run_dir: Path, verbose: bool = False) -> logging.Handler:
    """Console (stderr) + run.log in the run directory for the `sparsify` logger; returns the
    run.log handler."""
    logger = logging.getLogger("sparsify")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_sparsify", False):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
    file = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    file.setLevel(logging.DEBUG)
    file.setFormatter(_RunLogFormatter())
    for handler in (console, file):
        handler._sparsify = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return file


@contextlib.contextmanager
def run_logging(run_dir: Path, verbose: bool = False) -> Iterator[logging.Handler]:
    """`setup_logging`, and third-party chatter to run.log only, for the block (a run)."""
    file = setup_logging(run_dir, verbose)
    _adopt_library_loggers()
    root = logging.getLogger()
    muted = [h for h in root.handlers if _is_console(h) and _MUTED not in h.filters]
    for handler in muted:
        handler.addFilter(_MUTED)
    # with a handler on the root, `logging.warning` no longer adds a stderr one (basicConfig)
    root.addHandler(_TO_RUN_LOG)
    captured = getattr(logging, "_warnings_showwarning", None) is not None
    logging.captureWarnings(True)
    _quiet_onnxruntime()
    _quiet_progress_bars()
    _active.append(file)
    try:
        yield file
    finally:
        _active.remove(file)
        if not captured:
            logging.captureWarnings(False)
        if not _active:
            root.removeHandler(_TO_RUN_LOG)
            for handler in muted:
                handler.removeFilter(_MUTED)
        file.flush()
