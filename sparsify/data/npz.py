"""The npz format: a folder of `.npz` files, one sample each, keys = model input names.

Arrays carry no batch dimension; `load_npz_samples` adds it, so each sample is ready as an
onnxruntime feed. Used for one-shot calibration of any model, custom use cases included.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.data.files import link_problem, visible_entries
from sparsify.data.layouts import layout_problem
from sparsify.errors import Problem, SparsifyError

log = logging.getLogger("sparsify")

Signature = dict[str, tuple[str, tuple[int, ...]]]  # input name -> (dtype, shape)

_LAYOUT = "a folder of .npz files, one sample each, keys = model input names"


@dataclass
class NpzSummary:
    root: str
    files: int
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> dtype, shape

    def to_dict(self) -> dict[str, Any]:
        # no labels: calibration data only, but every format's summary names its classes
        return {**asdict(self), "classes": []}


def _npz_files(root: Path, problems: list[Problem], links: list[Problem]) -> list[Path]:
    """The .npz files in `root`; other entries go to `problems`, broken links to `links`."""
    files = []
    for entry in visible_entries(root):
        broken = link_problem(entry)
        if broken is not None:
            links.append(broken)
        elif entry.is_dir():
            fix = f"move its .npz files up into {root} or remove the folder"
            problems.append(Problem(entry.path, entry.name, "nested folder is not read", fix))
        elif not entry.name.lower().endswith(".npz"):
            ext = os.path.splitext(entry.name)[1] or entry.name
            fix = "save each sample with np.savez(path, **{input_name: array}), or remove the file"
            problems.append(Problem(entry.path, ext, "not an .npz file", fix))
        else:
            files.append(Path(entry.path))
    return files


def _read_signature(path: Path) -> tuple[Signature | None, str]:
    """(input name -> (dtype, shape), "") or (None, why the file cannot be used)."""
    try:
        # np.load guesses the format from these bytes, and calls anything unknown "pickled"
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"\x93NUMPY"):
            return None, "is a single .npy array, not an .npz archive"
        if not magic.startswith(b"PK"):
            return None, "is not an .npz archive (no zip header)"
        with np.load(path, allow_pickle=False) as npz:
            # reading each array checks the whole file, not only its index
            return {k: (str(npz[k].dtype), npz[k].shape) for k in npz.files}, ""
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            return None, "holds Python objects (pickled); only numeric arrays are read"
        return None, f"cannot be read (ValueError: {exc})"
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        return None, f"cannot be read ({type(exc).__name__}: {exc})"


def validate_npz_folder(root: Path) -> tuple[NpzSummary | None, list[Problem]]:
    """Load every file once; all must share keys, dtypes and ranks. Returns ALL problems.

    Files are compared with the most common signature; the summary's shapes are those of the
    first file that has it. The summary is None when no file is readable.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        fix = f"point data.path at {_LAYOUT}"
        return None, [Problem(str(root), str(root), f"npz folder {what}", fix)]
    problems: list[Problem] = []
    links: list[Problem] = []
    files = _npz_files(root, problems, links)
    problems += links
    if not files and not links:
        wrong_kind = layout_problem(root, "npz")
        if wrong_kind is not None:  # the one problem that matters; the rest follow from it
            return None, [wrong_kind]
        fix = "add one .npz per sample: np.savez(f'{i}.npz', **{input_name: array})"
        problems.append(Problem(str(root), 0, "no .npz files", fix))
        return None, problems

    signatures: list[tuple[Path, Signature]] = []
    for path in files:
        signature, why = _read_signature(path)
        if signature is None:
            fix = "re-save it with np.savez and numeric arrays, or delete it"
            problems.append(Problem(str(path), path.name, f"file {why}", fix))
        elif not signature:
            fix = "save the model inputs into it, keyed by input name"
            problems.append(Problem(str(path), path.name, "archive holds no arrays", fix))
        else:
            signatures.append((path, signature))
    if not signatures:
        return None, problems
    # the most common key set / dtypes / ranks is the reference, so the odd files get flagged
    kinds = Counter(_kind(sig) for _, sig in signatures)
    common = max(kinds.values())
    first, reference = next((p, sig) for p, sig in signatures if kinds[_kind(sig)] == common)
    for path, signature in signatures:
        if path != first:
            problems += _compare(path, signature, reference, first.name)
    inputs = {k: {"dtype": dtype, "shape": list(shape)} for k, (dtype, shape) in reference.items()}
    for key, spec in inputs.items():  # every distinct shape, with a file that has it
        seen: dict[str, str] = {}
        for path, signature in signatures:
            if key in signature:
                seen.setdefault(str(list(signature[key][1])), str(path))
        if len(seen) > 1:  # samples of several shapes: the model check looks at each
            spec["shapes"] = [
                {"shape": [int(n) for n in text.strip("[]").split(",") if n.strip()], "file": f}
                for text, f in seen.items()
            ]
    return NpzSummary(root=str(root), files=len(signatures), inputs=inputs), problems


def _kind(signature: Signature) -> tuple[tuple[str, str, int], ...]:
    return tuple(sorted((k, dtype, len(shape)) for k, (dtype, shape) in signature.items()))


def _compare(
    path: Path,
    signature: Signature,
    reference: Signature,
    first: str,
) -> list[Problem]:
    """Differences from the reference file: key set, then dtype and rank of each shared key."""
    problems = []
    missing, extra = (
        sorted(set(reference) - set(signature)),
        sorted(set(signature) - set(reference)),
    )
    if missing or extra:
        detail = "; ".join(
            f"{what} {', '.join(keys)}"
            for what, keys in (("missing", missing), ("extra", extra))
            if keys
        )
        fix = f"save the same input names in every file (as in {first}: {', '.join(reference)})"
        problems.append(
            Problem(str(path), sorted(signature), f"keys differ from {first}: {detail}", fix)
        )
    for key in sorted(set(signature) & set(reference)):
        (dtype, shape), (ref_dtype, ref_shape) = signature[key], reference[key]
        if dtype != ref_dtype:
            fix = f"cast it with array.astype('{ref_dtype}') before saving"
            msg = f"'{key}' is {dtype}, but {ref_dtype} in {first}"
            problems.append(Problem(f"{path}:{key}", dtype, msg, fix))
        if len(shape) != len(ref_shape):
            fix = "save every sample without a batch dimension, with the same number of axes"
            msg = f"'{key}' has {len(shape)} axes {list(shape)}, but {len(ref_shape)} in {first}"
            problems.append(Problem(f"{path}:{key}", list(shape), msg, fix))
    return problems


def log_summary(summary: NpzSummary, logger: logging.Logger) -> None:
    """Log sample count and input signature; warn about few samples and unnamed inputs."""
    logger.info(
        "NPZ folder %s: %d samples; inputs %s",
        summary.root,
        summary.files,
        ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in summary.inputs.items()),
    )
    if summary.files < 10:
        logger.warning(
            "Only %d calibration samples; quantization ranges will be rough (aim for 100+)",
            summary.files,
        )
    if any(k.startswith("arr_") for k in summary.inputs):
        logger.warning(
            "Input names %s look positional (np.savez without keywords); they must match the "
            "model's input names",
            ", ".join(summary.inputs),
        )


def validate_for_config(root: Path, cfg: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The `npz` entry of DATA_FORMATS; `cfg` is unused (any use case can calibrate on npz)."""
    summary, problems = validate_npz_folder(Path(root))
    if summary is not None and not problems:
        log_summary(summary, log)
    return (summary.to_dict() if summary else None), problems


def load_npz_samples(
    root: Path, n: int | None = None, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """`n` samples chosen at random with `seed` (all if None or fewer), in file-name order;
    each array gets a leading batch dimension of 1."""
    files = sorted(p for p in Path(root).glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise SparsifyError(f"no .npz files in {root}; add one per sample ({_LAYOUT})")
    if n is not None and n < len(files):
        picked = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
        files = [files[i] for i in sorted(picked)]
    samples = []
    for path in files:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise SparsifyError(f"{path} is not an .npz archive; re-save it with np.savez")
        with loaded as npz:
            samples.append({k: np.ascontiguousarray(npz[k])[np.newaxis] for k in npz.files})
    return samples
