"""A labelled English sentiment task built offline from the VADER lexicon, for the text benchmarks.

No labelled text dataset ships offline, so this one is generated from a real resource: the
VADER lexicon (`pip install --no-deps vaderSentiment`), about 7,500 entries, each the mean
of ten human ratings from -4 (most negative) to +4. Kept: lowercase words that are a whole
token of the model's WordPiece vocabulary and rated at least 1.0 away from neutral (about
2,000). The words are split in two disjoint halves, one for train and one for val, so a val
sentence's label can only be read from what the pretrained model already knows about words
it never saw in fine-tuning: that is what pruning can destroy, and what the benchmark measures.

Each sentence fills a template with one or two rated words; its label is:
- one word: the word's polarity ("the trip was {w}");
- negated: the opposite ("there was nothing {w} about it");
- contrast: the polarity of the word after "but" ("{a} at first, but {b} in the end").

The files are `train.csv` and `val.csv` with `text,label` columns (label `negative` or
`positive`), the `hf_text` format the nlp use cases read.
"""

from __future__ import annotations

import csv
import random
import zlib
from pathlib import Path

SINGLE = [
    "the trip was {w}",
    "honestly, the whole thing felt {w}",
    "my friend called the show {w}",
    "one word for the evening: {w}",
    "the service today was {w}",
    "reviewers keep describing it as {w}",
    "what i remember most is how {w} it was",
    "the new album is {w}",
    "{w}, that is how the meeting went",
    "the food and the staff were {w}",
]
NEGATED = [
    "there was nothing {w} about it",
    "i would not call the trip {w} at all",
    "the film was never {w}, not even once",
    "it was hardly {w}",
]
CONTRAST = [
    "{a} at first, but {b} in the end",
    "the start was {a}, but the rest was {b}",
    "people said it was {a}, but i found it {b}",
]
LABELS = ("negative", "positive")


def vader_words(vocab: set[str], min_strength: float = 1.0) -> dict[str, float]:
    """Lexicon words (rating by word) that are whole tokens of `vocab`."""
    try:
        import vaderSentiment
    except ImportError:
        raise SystemExit(
            "the text task needs the VADER lexicon: pip install --no-deps vaderSentiment"
        ) from None
    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    words = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        word, rating = fields[0], float(fields[1])
        if word.isalpha() and word.islower() and word in vocab and abs(rating) >= min_strength:
            words[word] = rating
    return words


def _sentence(rng: random.Random, words: list[tuple[str, float]]) -> tuple[str, int]:
    kind = rng.random()
    word, rating = rng.choice(words)
    if kind < 0.5:
        return rng.choice(SINGLE).format(w=word), int(rating > 0)
    if kind < 0.75:
        return rng.choice(NEGATED).format(w=word), int(rating < 0)
    first, first_rating = rng.choice(words)
    while (first_rating > 0) == (rating > 0):  # a contrast needs opposite polarities
        first, first_rating = rng.choice(words)
    return rng.choice(CONTRAST).format(a=first, b=word), int(rating > 0)


def write_lexicon_sentiment(
    root: Path, vocab: set[str], train_size: int = 3000, val_size: int = 1000, seed: int = 0
) -> Path:
    """Write `root/train.csv` and `root/val.csv` (disjoint words); return `root`."""
    words = vader_words(vocab)
    # the split by a hash of the word, so it does not depend on the lexicon's order
    halves: tuple[list, list] = ([], [])
    for word, rating in sorted(words.items()):
        halves[zlib.crc32(word.encode()) % 5 < 3].append((word, rating))
    val_words, train_words = halves
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, pool, size in (("train", train_words, train_size), ("val", val_words, val_size)):
        with (root / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for _ in range(size):
                text, label = _sentence(rng, pool)
                writer.writerow([text, LABELS[label]])
    return root


def wordpiece_vocab(model_dir: Path) -> set[str]:
    return set((model_dir / "vocab.txt").read_text(encoding="utf-8").split())
