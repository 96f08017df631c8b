"""How fast `validate_image_folder` reads a 10,000-image folder (every image verified).

.venv/bin/python benchmarks/validate_image_folder.py [--images 10000] [--classes 10]
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

from sparsify.data.image_folder import validate_image_folder  # noqa: E402


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


def write_folder(root: Path, images: int, classes: int, val_fraction: float = 0.2) -> None:
    pool = encoded_pngs(64, 16, seed=0)
    per_class = images // classes
    n_val = int(per_class * val_fraction)
    for c in range(classes):
        for i in range(per_class):
            split = "val" if i < n_val else "train"
            folder = root / split / f"class_{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:05d}.png").write_bytes(pool[(c * per_class + i) % len(pool)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sparsify-bench-") as tmp:
        root = Path(tmp) / "data"
        start = time.perf_counter()
        write_folder(root, args.images, args.classes)
        setup_s = time.perf_counter() - start

        start = time.perf_counter()
        summary, problems = validate_image_folder(root, check_images=False)
        listing_s = time.perf_counter() - start

        start = time.perf_counter()
        summary, problems = validate_image_folder(root)
        total_s = time.perf_counter() - start

    assert summary is not None and not problems, problems
    n = sum(summary.splits.values())
    print(f"wrote {n} images in {setup_s:.2f} s")
    print(f"layout only (check_images=False): {listing_s:.2f} s, {n / listing_s:,.0f} images/s")
    print(f"full validation (every image verified): {total_s:.2f} s, {n / total_s:,.0f} images/s")
    print(f"verify cost: {total_s / listing_s:.1f}x the directory walk")


if __name__ == "__main__":
    main()
