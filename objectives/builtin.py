"""A built-in sentiment task written by the project, so the demo needs no data files and no network.

Short reviews are composed from subjects and opinion phrases; validation uses phrases the training split
never shows, so an improvement there is generalisation, not memorisation of sentences.
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
