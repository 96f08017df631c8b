"""A generated English NER set in BIO with 10 entity types and a realistic `O` share.

Sentences come from varied templates (news, business, sport, travel, finance) with filler
clauses, entity lexicons (people, places, organisations, dates, money, times, percentages,
products, events, nationalities) where many entities span several tokens, and every value
drawn at random, so the val split holds entity strings and sentence shapes the model has not
seen verbatim. About 85-90 % of the tokens are `O`, as in CoNLL-style news text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = "John Mary Ahmed Li Wei Sofia Carlos Aiko Olga Pierre Fatima Lars Priya Diego Anna".split()
LAST = "Smith Garcia Chen Müller Rossi Nakamura Ivanova Dubois Khan Johansson Patel Silva".split()
CITIES = [
    "Paris", "Berlin", "New York", "São Paulo", "Tokyo", "Cape Town", "Madrid", "Mumbai",
    "Buenos Aires", "Toronto", "Los Angeles", "Hong Kong", "Lagos", "Oslo", "Kuala Lumpur",
]  # fmt: skip
COUNTRIES = ["France", "Germany", "Japan", "Brazil", "South Africa", "India", "Canada", "Norway"]
ORGS = [
    "Acme Corp", "Globex", "Initech", "Umbrella Holdings", "Northwind Traders",
    "the World Bank", "Stark Industries", "Blue Harbor Capital", "Wayne Enterprises",
    "the United Nations", "Helios Energy", "Vertex Labs", "the Red Cross",
]  # fmt: skip
PRODUCTS = [
    "iPhone 15", "Model Y", "Galaxy S24", "PlayStation 5", "Kindle", "ThinkPad X1",
    "Surface Pro", "Pixel 8", "Boeing 787", "Corolla",
]  # fmt: skip
EVENTS = [
    "the World Cup", "the Olympic Games", "Expo 2025", "the Tokyo Marathon",
    "the Cannes Film Festival", "Web Summit", "the Tour de France", "Davos",
]  # fmt: skip
NORP = ["French", "German", "Japanese", "Brazilian", "Indian", "Canadian", "Norwegian", "Kenyan"]
MONTHS = "January February March April May June July August September October November".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday".split()
FILLERS = [
    "according to a statement released this week",
    "the report said",
    "although details were not made public",
    "as analysts had expected",
    "in a move that surprised many observers",
    "officials said on condition of anonymity",
    "after months of negotiations",
    "the company said in a filing",
    "which drew criticism from several groups",
    "and further talks are planned",
]
TEMPLATES = [
    "{PER} , the chief executive of {ORG} , said the company would open a new office in {LOC} {DATE} , {F} .",
    "{ORG} reported a profit of {MONEY} for the quarter , up {PERCENT} from a year earlier , {F} .",
    "Shares of {ORG} fell {PERCENT} on {DATE} after the launch of the {PRODUCT} was delayed , {F} .",
    "{PER} will travel to {LOC} for {EVENT} , where {NORP} officials are expected to attend , {F} .",
    "The {NORP} government signed an agreement with {ORG} worth {MONEY} , {F} .",
    "At {TIME} on {DATE} , police in {LOC} said they had arrested two men , {F} .",
    "{PER} and {PER} met in {LOC} to discuss the sale of {ORG} , {F} .",
    "The {PRODUCT} will go on sale in {LOC} {DATE} for {MONEY} , {F} .",
    "{F} , {PER} said the {NORP} team was ready for {EVENT} .",
    "Inflation in {LOC} rose to {PERCENT} in {DATE} , the highest level in a decade , {F} .",
    "{ORG} hired {PER} as its new head of research , {F} .",
    "Thousands of fans gathered in {LOC} at {TIME} to watch the final of {EVENT} .",
    "The meeting between {ORG} and {ORG} is scheduled for {DATE} at {TIME} in {LOC} .",
    "{PER} , who was born in {LOC} , has worked for {ORG} for many years , {F} .",
    "Sales of the {PRODUCT} grew by {PERCENT} , bringing in {MONEY} , {F} .",
    "It was not clear whether the plan would go ahead , {F} .",
    "The weather was mild for most of the week and the roads were quiet .",
]  # fmt: skip
# sentences without names, as most of a news text is: they set the `O` share
PLAIN = [
    "It was not clear whether the plan would go ahead , and no date has been set .",
    "The weather was mild for most of the week and the roads were quiet .",
    "Critics say the new rules will make it harder for small firms to compete .",
    "Prices have risen sharply over the past year , hitting families on low incomes hardest .",
    "The two sides agreed to meet again but gave no further details .",
    "Several people were injured when the roof of the building collapsed during the storm .",
    "The decision is expected to be challenged in court by a number of groups .",
    "Most of the money will be spent on schools , hospitals and new roads .",
    "Experts warned that the situation could get worse before it gets better .",
    "The team played well in the second half but could not find a winning goal .",
    "Residents said they had not been told about the changes until the last minute .",
    "The proposal still needs the approval of the board and of the regulators .",
]
TYPES = ("PER", "LOC", "ORG", "DATE", "MONEY", "TIME", "PERCENT", "PRODUCT", "EVENT", "NORP")


def _entity(kind: str, rng: random.Random) -> str:
    if kind == "PER":
        return rng.choice([rng.choice(FIRST), f"{rng.choice(FIRST)} {rng.choice(LAST)}"])
    if kind == "LOC":
        return rng.choice(CITIES + COUNTRIES)
    if kind == "ORG":
        return rng.choice(ORGS)
    if kind == "DATE":
        day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1995, 2025)
        return rng.choice(
            [f"{day} {month} {year}", f"{month} {year}", rng.choice(WEEKDAYS), f"{month} {day}"]
        )
    if kind == "MONEY":
        amount = rng.choice([f"{rng.randint(2, 950)}", f"{rng.randint(1, 99)}.{rng.randint(1, 9)}"])
        return rng.choice(
            [f"${amount} million", f"{amount} billion euros", f"${amount}", f"{amount} million yen"]
        )
    if kind == "TIME":
        return rng.choice([f"{rng.randint(1, 12)} p.m.", f"{rng.randint(1, 11)}:30 a.m.", "noon"])
    if kind == "PERCENT":
        return rng.choice(
            [f"{rng.randint(1, 60)} percent", f"{rng.randint(1, 9)}.{rng.randint(0, 9)}%"]
        )
    if kind == "PRODUCT":
        return rng.choice(PRODUCTS)
    if kind == "EVENT":
        return rng.choice(EVENTS)
    return rng.choice(NORP)


def sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """One sentence: its words and BIO tags (an entity starting with "the" keeps it O)."""
    if rng.random() < 0.4:
        plain = rng.choice(PLAIN).split()
        return plain, ["O"] * len(plain)
    words: list[str] = []
    tags: list[str] = []
    for piece in rng.choice(TEMPLATES).split():
        if piece == "{F}":
            filler = " , ".join(rng.sample(FILLERS, rng.randint(1, 2))).split()
            words += filler
            tags += ["O"] * len(filler)
        elif piece.startswith("{") and piece.endswith("}"):
            kind = piece[1:-1]
            parts = _entity(kind, rng).split()
            if parts[0] == "the":  # "the World Bank": the article is not the name
                words.append("the")
                tags.append("O")
                parts = parts[1:]
            words += parts
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(parts) - 1)
        else:
            words.append(piece)
            tags.append("O")
    return words, tags


def write_ner(root: Path, n: int = 2000, val_share: float = 0.2, seed: int = 0) -> Path:
    """train.jsonl / val.jsonl ({"tokens", "ner_tags"}) under `root`; returns `root`."""
    rng = random.Random(seed)
    rows = [sentence(rng) for _ in range(n)]
    n_val = int(round(n * val_share))
    root.mkdir(parents=True, exist_ok=True)
    for split, part in (("val", rows[:n_val]), ("train", rows[n_val:])):
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for words, tags in part:
                f.write(json.dumps({"tokens": words, "ner_tags": tags}) + "\n")
    return root


def o_share(root: Path) -> float:
    """The fraction of `O` tags over both splits."""
    total = outside = 0
    for split in ("train", "val"):
        for line in (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            tags = json.loads(line)["ner_tags"]
            total += len(tags)
            outside += sum(t == "O" for t in tags)
    return outside / max(1, total)
