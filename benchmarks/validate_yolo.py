"""How fast `validate_yolo_dataset` reads a 10,000-image YOLO dataset (every image verified,
every label line parsed), and how long linking it into a run dir for Ultralytics takes.

.venv/bin/python benchmarks/validate_yolo.py [--images 10000] [--classes 10] [--segment]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from sparsify.data.yolo import validate_yolo_dataset  # noqa: E402
from sparsify.data.yolo_loader import write_ultralytics_dataset  # noqa: E402


def encoded_pngs(count: int, size: int, seed: int) -> list[bytes]:
    """A pool of distinct tiny PNGs; writing copies keeps set-up time out of the way."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        pool.append(buffer.getvalue())
    return pool


def label_text(rng: np.random.Generator, classes: int, segment: bool) -> str:
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(classes))
        if segment:
            points = rng.uniform(0.05, 0.95, size=int(rng.integers(3, 12)) * 2)
            lines.append(f"{k} " + " ".join(f"{v:.6f}" for v in points))
        else:
            xc, yc, w, h = rng.uniform(0.2, 0.8, size=4) * [1, 1, 0.3, 0.3]
            lines.append(f"{k} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + "\n"


def write_dataset(root: Path, images: int, classes: int, segment: bool) -> None:
    pool = encoded_pngs(64, 16, seed=0)
    rng = np.random.default_rng(1)
    labels = "annotations" if segment else "labels"
    n_val = images // 5
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / labels / split).mkdir(parents=True)
    for i in range(images):
        split = "val" if i < n_val else "train"
        (root / "images" / split / f"{i:05d}.png").write_bytes(pool[i % len(pool)])
        (root / labels / split / f"{i:05d}.txt").write_text(label_text(rng, classes, segment))
    (root / "classes.txt").write_text("\n".join(f"class_{c}" for c in range(classes)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--segment", action="store_true", help="polygon labels")
    args = parser.parse_args()
    task = "instance-segmentation" if args.segment else "object-detection"

    with tempfile.TemporaryDirectory(prefix="sparsify-bench-") as tmp:
        root = Path(tmp) / "data"
        start = time.perf_counter()
        write_dataset(root, args.images, args.classes, args.segment)
        setup_s = time.perf_counter() - start

        start = time.perf_counter()
        summary, problems = validate_yolo_dataset(root, task)
        validate_s = time.perf_counter() - start
        assert summary is not None and not problems, problems[:5]

        start = time.perf_counter()
        write_ultralytics_dataset(summary.to_dict(), Path(tmp) / "run")
        link_s = time.perf_counter() - start

    n = sum(summary.splits.values())
    objects = sum(sum(c.values()) for c in summary.instances.values())
    print(f"{task}: wrote {n} images + label files in {setup_s:.2f} s")
    print(
        f"validation (every image verified, {objects} label lines parsed): "
        f"{validate_s:.2f} s, {n / validate_s:,.0f} images/s"
    )
    print(f"write_ultralytics_dataset ({2 * n} symlinks): {link_s:.2f} s")


if __name__ == "__main__":
    main()
