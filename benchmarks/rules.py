"""Rule rewards and a rule judge written for the benchmarks: a keyword reward and a preference that rarely ties.

Neither is about sentiment, so together with VADER they test that one optimiser setting moves objectives
of different kinds and units.
"""

from __future__ import annotations

import re

PERSONAL = {"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "we", "we're", "our", "us", "you", "you're",
            "your", "yours"}
_WORD = re.compile(r"[A-Za-z']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def personal_reward(prompts, completions, **columns) -> list[float]:
    """Keyword rule: share of a completion's words that are first/second-person pronouns (0 for no words)."""
    out = []
    for text in completions:
        ws = [w.lower() for w in words(text)]
        out.append(sum(w in PERSONAL for w in ws) / len(ws) if ws else 0.0)  # r = #pronouns / #words
    return out


def mean_word_length(text: str) -> float:
    ws = words(text)
    return sum(len(w) for w in ws) / len(ws) if ws else float("inf")  # no words: worst for "plain"


def plain_words_judge(prompt: str, a: str, b: str) -> int:
    """Preference rule: the completion with the shorter mean word length (plainer wording) wins; equal is a tie."""
    la, lb = mean_word_length(a), mean_word_length(b)
    return 0 if la == lb else (1 if la < lb else -1)


MIN_DISTINCT_WORDS = 6  # a fluent 16-token answer has ~10; "A:\nA:\nA:" (how the plain judge was gamed) has 1


def distinct_words(text: str) -> int:
    return len({w.lower() for w in words(text)})


def guarded_plain_words_judge(prompt: str, a: str, b: str) -> int:
    """plain_words_judge between answers that say something: one with fewer than MIN_DISTINCT_WORDS distinct
    words loses to one with at least that many; two such answers compare by distinct words (more wins)."""
    da, db = distinct_words(a), distinct_words(b)
    if da < MIN_DISTINCT_WORDS or db < MIN_DISTINCT_WORDS:
        return 0 if da == db else (1 if da > db else -1)
    return plain_words_judge(prompt, a, b)
