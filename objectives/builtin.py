"""Built-in tasks written by the project, so demos and benchmarks need no data files and no network.

Sentiment: short reviews composed from subjects and opinion phrases. Topics: news lines composed from neutral
openings and phrases about sports, business, science or politics. Validation uses phrases the training split never
shows, so an improvement there is generalisation, not memorisation of sentences.
"""

from __future__ import annotations

import random

SUBJECTS = [
    "The movie", "This restaurant", "The new phone", "Her latest album", "The hotel room", "This book",
    "The concert", "Our tour guide", "The video game", "This coffee shop", "The sequel", "The laptop",
    "The museum exhibit", "His stand-up show", "The customer service", "The pasta", "This podcast", "The play",
]
POSITIVE = [
    "was an absolute delight", "exceeded every expectation", "made my whole week", "was wonderful from start to finish",
    "is something I would happily recommend", "left me smiling for hours", "was worth every penny",
    "felt fresh, warm and clever", "is the best I have tried in years", "was charming and beautifully made",
    "won me over completely", "was a joy", "deserves all the praise it gets", "was thoughtful and moving",
    "turned out to be a pleasant surprise", "was brilliant", "felt like a real treat", "is genuinely excellent",
]
NEGATIVE = [
    "was a complete waste of time", "fell apart in every way", "left me bored and annoyed", "was a total mess",
    "is something I would never recommend", "made me want my money back", "was dull and lifeless",
    "felt cheap and careless", "is the worst I have tried in years", "was painfully slow and clumsy",
    "let me down badly", "was a disaster", "deserves none of the hype", "was tedious and shallow",
    "turned out to be a nasty disappointment", "was awful", "felt like a chore", "is genuinely terrible",
]


def sentiment_examples(split: str = "train", seed: int = 0) -> list[dict]:
    """{'sentence', 'label'} rows (1 = positive). Train and validation use disjoint opinion phrases."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    cut = 12  # phrases [0, 12) train, [12, 18) validation
    pick = slice(0, cut) if split == "train" else slice(cut, None)
    rows = [
        {"sentence": f"{subject} {phrase}.", "label": label}
        for label, phrases in ((1, POSITIVE[pick]), (0, NEGATIVE[pick]))
        for phrase in phrases
        for subject in SUBJECTS
    ]
    random.Random(seed).shuffle(rows)
    return rows


OPENINGS = [
    "According to the report,", "Yesterday,", "In a surprise move,", "Officials said that", "Early this morning,",
    "As expected,", "For the first time in years,", "Sources confirmed that", "Late on Friday,", "In the news today:",
    "Once again,", "By the end of the week,",
]
TOPICS = {  # label: (name, phrases); phrases [0, 10) train, [10, 16) validation
    0: ("sports", [
        "the home team won the championship final", "the striker scored twice in the second half",
        "the tennis star reached the semi-finals", "the coach was fired after a losing season",
        "the marathon drew a record number of runners", "the club signed a young goalkeeper",
        "the match went to a penalty shootout", "the cyclist took the yellow jersey",
        "the league suspended two players for doping", "the boxer retired after his last fight",
        "the relay team broke the world record", "the visitors equalised in stoppage time",
        "the pitcher threw a perfect game", "the swimmer won her third gold medal",
        "the derby ended in a goalless draw", "the rookie was named player of the year"]),
    1: ("business", [
        "the company reported record quarterly profits", "shares fell sharply after the earnings call",
        "the bank raised its interest rates", "the retailer announced plans to close fifty stores",
        "the two firms agreed to a merger", "the startup raised millions from investors",
        "oil prices climbed to a new high", "the carmaker recalled thousands of vehicles",
        "the central bank warned of slowing growth", "the airline cut its revenue forecast",
        "the chain's sales rose for a sixth straight month", "investors sold off technology stocks",
        "the firm laid off a tenth of its workforce", "the stock market closed at a record",
        "the supplier raised prices for its customers", "the brewer bought a rival for two billion"]),
    2: ("science", [
        "researchers discovered a new species of frog", "astronomers spotted a planet around a nearby star",
        "the telescope captured images of a distant galaxy", "scientists sequenced the genome of the ancient wheat",
        "a new vaccine passed its first clinical trial", "physicists measured the particle's mass precisely",
        "the probe landed on the surface of the comet", "biologists traced how the virus spreads",
        "the lab built a faster quantum computer", "geologists found evidence of an ancient lake",
        "chemists created a material that heals itself", "the rover drilled into rocks on Mars",
        "a study linked sleep loss to memory problems", "engineers tested a new kind of battery",
        "the experiment confirmed the theory's prediction", "divers mapped a coral reef unknown to science"]),
    3: ("politics", [
        "the president signed the new budget into law", "the opposition called for early elections",
        "parliament voted against the proposed reform", "the minister resigned after the scandal",
        "the senator announced a run for governor", "voters went to the polls in the capital",
        "the two leaders met to discuss the treaty", "the party chose a new leader",
        "the government imposed sanctions on the regime", "lawmakers debated the immigration bill",
        "the prime minister reshuffled the cabinet", "the mayor lost the vote of confidence",
        "the court blocked the new election law", "protesters marched against the tax bill",
        "the ruling coalition collapsed overnight", "the candidate conceded the election"]),
}


def topic_examples(split: str = "train", seed: int = 0) -> list[dict]:
    """{'sentence', 'label'} news lines, label 0-3 = sports, business, science, politics (names: TOPICS)."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    pick = slice(0, 10) if split == "train" else slice(10, None)
    rows = [{"sentence": f"{opening} {phrase}.", "label": label}
            for label, (_, phrases) in TOPICS.items() for phrase in phrases[pick] for opening in OPENINGS]
    random.Random(seed).shuffle(rows)
    return rows


BUILTIN = {"sentiment": sentiment_examples, "topics": topic_examples}


def write_tsv(task: str, folder) -> None:
    """Write a built-in task as folder/train.tsv and folder/validation.tsv (the GLUE layout the recipes read)."""
    from pathlib import Path

    if task not in BUILTIN:
        raise ValueError(f"unknown built-in task {task!r}; choose from {sorted(BUILTIN)}")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        rows = BUILTIN[task](split, 0)
        (root / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows))
