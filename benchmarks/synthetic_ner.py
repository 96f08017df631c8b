"""A generated English NER set in BIO with 10 entity types and a realistic `O` share, whose
val split measures generalisation to names the model has never seen.

Sentences come from templates (news, business, sport, travel, finance) with filler clauses
and entity lexicons (people, places, organisations, dates, money, times, percentages,
products, events, nationalities) where many entities span several tokens. About 85 % of the
tokens are `O`, as in CoNLL-style news text (half of the sentences name nothing).

Train and val share nothing a model could memorise: every lexicon of names (first and last
names, cities, countries, organisation stems and fixed names, product brands, events,
nationalities) is cut in two by a seeded shuffle, 70 % for train and 30 % for val, and the
sentence templates, filler clauses and name-free sentences are two disjoint sets, so val
sentences have unseen names in unseen contexts: a model has to tag them from the words around
them and from their shape. Closed-class words stay shared, as in real text: month and weekday
names, currency words, organisation suffixes ("Holdings", "Bank") and event kinds
("Marathon"); dates, amounts, times and percentages draw fresh numbers in both splits.
The same `seed` writes the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


FIRST = """John Mary Ahmed Wei Sofia Carlos Aiko Olga Pierre Fatima Lars Priya Diego Anna James
    Elena Mohammed Yuki Chloe Rahul Ingrid Mateo Amara Hiroshi Leila Thomas Nadia Kwame Isabel
    Dmitri Grace Omar Hana Lucas Zainab Felix Mei Andrei Camila Tariq Emma Sanjay Beatriz Kenji
    Laura Yusuf Marta Jin Aaliyah Henrik Rosa Arjun Claire Tomasz Ngozi Paolo Sara Vikram Julia
    Emeka Astrid Rafael Min Helen Karim Lena Joaquim Ayesha Daniel Chiara Oluwaseun Peter Noor
    Sergei Agnes Luis Keiko Patrick Amina Stefan Lucia Ravi Margot David Esther Ivan Farah""".split()
LAST = """Smith Garcia Chen Müller Rossi Nakamura Ivanova Dubois Khan Johansson Patel Silva
    Okafor Kowalski Tanaka Fernandez Novak Haddad Larsen Moreau Kim Schneider Mensah Romano
    Yamamoto Petrov Bianchi Andersson Nguyen Hoffmann Ortiz Sato Costa Weber Mwangi Eriksson
    Lopez Park Fischer Brennan Takahashi Horvat Rahman Lindqvist Ferreira Jensen Abubakar
    Wagner Kaplan Morales Suzuki Popescu Nielsen Ward Kuznetsov Ricci Bakker Adeyemi Gomez Yilmaz
    O'Brien Castillo Watanabe Becker Ramos Sokolov Hansen Obi Marino Singh Vasquez Klein
    Mahmoud Lindgren Herrera Ito Volkov Byrne Santos Janssen Ibrahim Walsh Reyes Ozturk""".split()
CITIES = _names("""Paris, Berlin, New York, São Paulo, Tokyo, Cape Town, Madrid, Mumbai,
    Buenos Aires, Toronto, Los Angeles, Hong Kong, Lagos, Oslo, Kuala Lumpur, Chicago, Lyon,
    Munich, Osaka, Nairobi, Lisbon, Warsaw, Seoul, Jakarta, Istanbul, Cairo, Sydney, Melbourne,
    Vancouver, Montreal, Mexico City, Bogotá, Lima, Santiago, Rio de Janeiro, Dublin, Edinburgh,
    Manchester, Amsterdam, Rotterdam, Brussels, Vienna, Prague, Budapest, Athens, Rome, Milan,
    Naples, Zurich, Geneva, Stockholm, Copenhagen, Helsinki, Tallinn, Riga, Kyiv, Bucharest,
    Belgrade, Zagreb, Dubai, Abu Dhabi, Doha, Riyadh, Tehran, Karachi, Lahore, Delhi,
    Bangalore, Chennai, Dhaka, Kathmandu, Colombo, Bangkok, Hanoi, Ho Chi Minh City, Manila,
    Singapore, Shanghai, Beijing, Shenzhen, Taipei, Busan, Kyoto, Auckland, Wellington, Perth,
    Accra, Addis Ababa, Dakar, Kinshasa, Johannesburg, Durban, Casablanca, Tunis, Algiers,
    San Francisco, Boston, Houston, Miami, Seattle, Atlanta, New Orleans, Denver, Phoenix,
    Quebec City, Havana, Panama City, Caracas, Quito, Montevideo, Marseille, Hamburg, Frankfurt""")
COUNTRIES = _names("""France, Germany, Japan, Brazil, South Africa, India, Canada, Norway,
    Kenya, Nigeria, Ghana, Egypt, Morocco, Mexico, Argentina, Chile, Peru, Colombia, Spain,
    Portugal, Italy, Greece, Poland, Sweden, Finland, Denmark, Ireland, Austria, Switzerland,
    Belgium, the Netherlands, the United States, the United Kingdom, Turkey, Iran, Pakistan,
    Bangladesh, Sri Lanka, Nepal, Thailand, Vietnam, Indonesia, Malaysia, the Philippines,
    South Korea, China, Australia, New Zealand, Ethiopia, Senegal, Tanzania, Uganda, Ukraine,
    Romania, Hungary, the Czech Republic, Saudi Arabia, Qatar, Cuba, Uruguay""")
ORG_STEMS = _names("""Acme, Globex, Initech, Umbrella, Northwind, Stark, Blue Harbor, Wayne,
    Helios, Vertex, Crescent, Redwood, Silverline, Meridian, Pinnacle, Apex, Bluestone, Oakridge,
    Falcon, Horizon, Cobalt, Evergreen, Ironbridge, Lakeside, Sterling, Nova, Orion,
    Atlas, Zenith, Keystone, Granite, Harbourview, Polaris, Westfield, Eastgate, Riverbend,
    Goldcrest, Clearwater, Trident, Aurora, Cedar, Beacon, Mosaic, Kestrel, Lumen, Quantum,
    Sapphire, Tidewater, Windmere, Brightpath, Copperfield, Highland, Norland, Suncoast""")
ORG_SUFFIXES = """Corp Group Holdings Bank Airlines Energy Labs Capital Motors Pharmaceuticals
    Media Telecom Inc Foods Systems Partners Insurance Logistics Mining Ventures""".split()
ORGS = _names("""the World Bank, the United Nations, the Red Cross, the European Commission,
    the International Monetary Fund, the World Health Organization, Amnesty International,
    Greenpeace, the African Union, NATO, UNICEF, Oxfam, the Federal Reserve, the Bank of England,
    the European Central Bank, Interpol, the Supreme Court, Harvard University,
    the University of Tokyo, Reuters, the BBC, Al Jazeera, the Associated Press, FIFA, the IOC,
    Doctors Without Borders, the Gates Foundation, the OECD, the World Trade Organization,
    Siemens, Toyota, Samsung, Nestlé, Unilever, Volkswagen, Shell, Airbus, Boeing""")
BRANDS = _names("""iPhone, Galaxy, Pixel, PlayStation, Xbox, Kindle, ThinkPad, Surface, Model,
    Corolla, Civic, Golf, Walkman, Zenbook, MacBook, iPad, Switch, GoPro, Roomba, Prius,
    Mustang, Fiesta, Yaris, Leaf, Ioniq, Vespa, Oculus, Echo, Fitbit, Xperia, Redmi,
    Aqua, Legion, Spectre, Inspiron, Alpha, Lumix, EOS, Bravia""")
EVENTS = _names("""the World Cup, the Olympic Games, Expo 2025, the Cannes Film Festival,
    Web Summit, the Tour de France, Davos, Wimbledon, the Super Bowl, the Champions League final,
    the Eurovision Song Contest, the Paralympic Games, the Ryder Cup, the Africa Cup of Nations,
    the Copa América, the Venice Biennale, Glastonbury, Oktoberfest, the Academy Awards,
    the Asian Games, the Commonwealth Games, the Rugby World Cup, the Monaco Grand Prix,
    the Nobel Prize ceremony, COP29, the G20 summit,
    Mobile World Congress""")
EVENT_KINDS = _names("""Marathon, Film Festival, Jazz Festival, Book Fair, Motor Show, Open,
    Grand Prix, Fashion Week, Biennale, Half Marathon, Summit, Trade Fair""")
NORP = """French German Japanese Brazilian Indian Canadian Norwegian Kenyan Nigerian Ghanaian
    Egyptian Moroccan Mexican Argentine Chilean Peruvian Colombian Spanish Portuguese Italian
    Greek Polish Swedish Finnish Danish Irish Austrian Swiss Belgian Dutch American British
    Turkish Iranian Pakistani Bangladeshi Thai Vietnamese Indonesian Malaysian Filipino Korean
    Chinese Australian Ethiopian Senegalese Ukrainian Romanian Hungarian Czech Cuban Muslim
    Christian Buddhist Hindu Jewish Catholic Republican Democrat Socialist""".split()
MONTHS = """January February March April May June July August September October November
    December""".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
TYPES = ("PER", "LOC", "ORG", "DATE", "MONEY", "TIME", "PERCENT", "PRODUCT", "EVENT", "NORP")
# the name lexicons that train and val split between them; the rest is closed-class
SPLIT_LEXICONS = {
    "first": FIRST, "last": LAST, "city": CITIES, "country": COUNTRIES, "org_stem": ORG_STEMS,
    "org": ORGS, "brand": BRANDS, "event": EVENTS, "norp": NORP,
}  # fmt: skip
VAL_LEXICON_SHARE = 0.3
PLAIN_SHARE = 0.5  # sentences that name nothing

TEMPLATES = {
    "train": [
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
        "{NORP} voters will go to the polls on {DATE} , {F} .",
        "A spokesman for {ORG} declined to comment on the report , {F} .",
        "{PER} won the opening stage of {EVENT} in {LOC} on {DATE} .",
        "The central bank of {LOC} cut its main interest rate by {PERCENT} to {PERCENT} , {F} .",
        "{ORG} agreed to buy {ORG} for {MONEY} in cash , {F} .",
        "Flights from {LOC} to {LOC} were cancelled on {DATE} after heavy snow , {F} .",
        "Reviewers praised the battery life of the {PRODUCT} , which {ORG} launched in {DATE} .",
        "{PER} told reporters in {LOC} that talks with {NORP} leaders had gone well .",
        "The trial of {PER} opened in {LOC} at {TIME} , {F} .",
    ],
    "val": [
        "In an interview with {ORG} , {PER} said {NORP} exports had fallen by {PERCENT} since {DATE} .",
        "{ORG} plans to spend {MONEY} on a new factory near {LOC} , {F} .",
        "Tickets for {EVENT} sold out within hours , {PER} confirmed , {F} .",
        "The {PRODUCT} costs {MONEY} and will ship to customers in {LOC} from {DATE} .",
        "{PER} , a lawyer for {ORG} , arrived at the court in {LOC} shortly after {TIME} .",
        "Unemployment among young {NORP} workers climbed to {PERCENT} , {F} .",
        "On {DATE} , {PER} became the first {NORP} athlete to win {EVENT} .",
        "Investors in {LOC} sold shares of {ORG} after it warned of a {MONEY} loss , {F} .",
        "The storm reached {LOC} at {TIME} and left thousands without power , {F} .",
        "Analysts at {ORG} expect demand for the {PRODUCT} to rise by {PERCENT} next year .",
        "{PER} and {PER} will lead the {NORP} delegation at {EVENT} in {LOC} .",
        "A new rail link between {LOC} and {LOC} will cost about {MONEY} , {F} .",
    ],
}  # fmt: skip
FILLERS = {
    "train": [
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
    ],
    "val": [
        "a government source said",
        "sources close to the matter told local media",
        "though the figures have yet to be confirmed",
        "a move welcomed by trade unions",
        "in a televised address late at night",
    ],
}
# sentences without names, as most of a news text is: they set the `O` share
PLAIN = {
    "train": [
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
    ],
    "val": [
        "The results will be published once the count is complete .",
        "Many shops stayed closed for a second day as the strike continued .",
        "The new law comes into force at the start of next year .",
        "Doctors said the patient was in a stable condition .",
        "The bridge has been closed to traffic while engineers inspect the damage .",
        "Supporters of the plan say it will create thousands of jobs .",
    ],
}


def lexicons(split: str, seed: int = 0) -> dict[str, list[str]]:
    """`split`'s share ("train" or "val") of each name lexicon: a seeded shuffle cut in two."""
    out = {}
    for name, items in SPLIT_LEXICONS.items():
        shuffled = sorted(items)
        random.Random(f"{seed}:{name}").shuffle(shuffled)
        cut = max(1, round(len(shuffled) * VAL_LEXICON_SHARE))
        out[name] = shuffled[:cut] if split == "val" else shuffled[cut:]
    return out


def _number(rng: random.Random) -> str:
    return rng.choice([f"{rng.randint(2, 950)}", f"{rng.randint(1, 99)}.{rng.randint(1, 9)}"])


def _entity(kind: str, lex: dict[str, list[str]], rng: random.Random) -> str:
    if kind == "PER":
        first, last = rng.choice(lex["first"]), rng.choice(lex["last"])
        initial = rng.choice("ABCDEFGHJKLMNPRSTW")
        return rng.choice([f"{first} {last}"] * 3 + [first, last, f"{first} {initial}. {last}"])
    if kind == "LOC":
        return rng.choice(lex["city"] if rng.random() < 0.65 else lex["country"])
    if kind == "ORG":
        if rng.random() < 0.35:
            return rng.choice(lex["org"])
        return f"{rng.choice(lex['org_stem'])} {rng.choice(ORG_SUFFIXES)}"
    if kind == "DATE":
        day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1990, 2026)
        return rng.choice(
            [f"{day} {month} {year}", f"{month} {year}", rng.choice(WEEKDAYS), f"{month} {day}"]
            + [str(year), f"{month} {day} , {year}"]
        )
    if kind == "MONEY":
        amount = _number(rng)
        return rng.choice(
            [f"${amount} million", f"{amount} billion euros", f"${amount}", f"{amount} million yen"]
            + [f"£{amount} million", f"{amount} million dollars", f"{amount} billion rupees"]
        )
    if kind == "TIME":
        hour = rng.randint(1, 12)
        return rng.choice(
            [f"{hour} p.m.", f"{hour}:{rng.choice(['15', '30', '45'])} a.m.", "noon", "midnight"]
            + [f"{hour} o'clock", f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} GMT"]
        )
    if kind == "PERCENT":
        return rng.choice(
            [f"{rng.randint(1, 60)} percent", f"{rng.randint(1, 9)}.{rng.randint(0, 9)}%"]
            + [f"{rng.randint(1, 9)}.{rng.randint(0, 9)} per cent"]
        )
    if kind == "PRODUCT":
        brand = rng.choice(lex["brand"])
        number = rng.randint(2, 20)
        return rng.choice([f"{brand} {number}", f"{brand} {number} Pro", f"{brand} X{number}"])
    if kind == "EVENT":
        if rng.random() < 0.4:
            return f"the {rng.choice(lex['city'])} {rng.choice(EVENT_KINDS)}"
        return rng.choice(lex["event"])
    return rng.choice(lex["norp"])


def sentence(
    rng: random.Random, split: str = "train", lex: dict[str, list[str]] | None = None
) -> tuple[list[str], list[str]]:
    """One `split` sentence: its words and BIO tags (an entity starting with "the" keeps it O)."""
    lex = lex if lex is not None else lexicons(split)
    if rng.random() < PLAIN_SHARE:
        plain = rng.choice(PLAIN[split]).split()
        return plain, ["O"] * len(plain)
    words: list[str] = []
    tags: list[str] = []
    for piece in rng.choice(TEMPLATES[split]).split():
        if piece == "{F}":
            filler = " , ".join(rng.sample(FILLERS[split], rng.randint(1, 2))).split()
            words += filler
            tags += ["O"] * len(filler)
        elif piece.startswith("{") and piece.endswith("}"):
            kind = piece[1:-1]
            parts = _entity(kind, lex, rng).split()
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
    n_val = int(round(n * val_share))
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("val", n_val), ("train", n - n_val)):
        rng, lex = random.Random(f"{seed}:{split}"), lexicons(split, seed)
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for _ in range(count):
                words, tags = sentence(rng, split, lex)
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
