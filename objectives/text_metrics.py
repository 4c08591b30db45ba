"""What tuning did to generated text: repetition (word and token trigrams), distinct-2 and length, per answer set.

Why: a reward can rise while the answers turn into loops or a string of one symbol; these numbers sit beside the
reward in every run, so a gain made of broken text shows. Pure Python: no model, no torch.
"""

from __future__ import annotations

import re
from statistics import fmean
from typing import Sequence

_WORD = re.compile(r"[A-Za-z']+")
_PIECE = re.compile(r"\w+|[^\w\s]")  # a word, or one symbol: "&&&&" is four pieces, so symbol loops are counted


def words(text: str) -> list[str]:
    """The lower-cased words of a text (letters and apostrophes)."""
    return [w.lower() for w in _WORD.findall(text)]


def pieces(text: str) -> list[str]:
    """Words, numbers and single symbols: a tokenisation that sees text with no words at all."""
    return [p.lower() for p in _PIECE.findall(text)]


def repeated_share(units: Sequence[str], n: int = 3) -> float:
    """Share of the n-grams of `units` that occurred earlier in them (0: no loop; 1: one n-gram over and over)."""
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def repeated_trigrams(text: str) -> float:
    """Share of a text's word trigrams that occurred earlier in it ("I am a I am a I am a": 4/7).
    Why: an LM reads its own loops as likely ("the the the ..." is cheap), so NLL alone lets them through."""
    return repeated_share(words(text))


def repeated_token_trigrams(text: str) -> float:
    """As repeated_trigrams, over words and single symbols: "&&&&&&&&" has no words, and reads 5/6 here."""
    return repeated_share(pieces(text))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the answer set (Li et al. 2016), on pieces; 0.0 when there are none.
    distinct-n = |{n-grams}| / #n-grams: low when the answers repeat themselves or each other."""
    grams = [tuple(ps[i:i + n]) for ps in map(pieces, texts) for i in range(len(ps) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def text_metrics(answers: Sequence[str], nll: Sequence[float] | None = None) -> dict[str, float]:
    """The set's mean repeated word / token trigram shares, distinct-2, mean length in pieces, and (given each
    answer's mean NLL per token under the untuned model, e.g. from `reference_nll`) their mean NLL."""
    answers = list(answers)
    if not answers:
        raise ValueError("text_metrics needs at least one answer")
    out = {
        "repeated_trigrams": fmean(map(repeated_trigrams, answers)),
        "repeated_token_trigrams": fmean(map(repeated_token_trigrams, answers)),
        "distinct_2": distinct_n(answers, 2),
        "mean_length": fmean(len(pieces(a)) for a in answers),
    }
    if nll is not None:
        if len(nll) != len(answers):
            raise ValueError(f"text_metrics: {len(nll)} NLL values for {len(answers)} answers")
        out["nll"] = fmean(nll)
    return out
