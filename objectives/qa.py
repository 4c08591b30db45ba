"""Extractive QA metrics (SQuAD exact match and token F1) and the generation objective that uses them.

Normalisation follows the official SQuAD v1.1/v2.0 script, so numbers are comparable with papers.
"""

from __future__ import annotations

import collections
import re
import string
from typing import TYPE_CHECKING, Callable

from .base import Objective, Score, check_texts, mean_score, prompts_for

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)  # whole words only: "theatre" keeps its "the"
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles a/an/the, collapse whitespace (SQuAD order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def gold_answers(example: dict, key: str = "answers") -> list[str]:
    """Gold answers from a list of strings, one string, or the Hugging Face {"text": [...]} form."""
    golds = example[key]
    if isinstance(golds, dict):
        golds = golds["text"]
    if isinstance(golds, str):
        golds = [golds]
    golds = [str(g) for g in golds]
    return golds or [""]  # SQuAD v2 unanswerable: the only correct answer is the empty string


def _em_one(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1_one(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:  # official rule: empty vs empty is 1, empty vs non-empty is 0
        return float(pred == ref)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())  # multiset overlap
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: list[str] | str) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer (max over golds)."""
    golds = [golds] if isinstance(golds, str) else golds
    return max(_em_one(prediction, g) for g in golds)


def token_f1(prediction: str, golds: list[str] | str) -> float:
    """Bag-of-tokens F1 after normalisation, max over gold answers."""
    golds = [golds] if isinstance(golds, str) else golds
    return max(_f1_one(prediction, g) for g in golds)


class SquadObjective(Objective):
    """Generate an answer and score it by token F1 (metric="f1") or exact match (metric="em")."""

    maximize = True

    def __init__(
        self,
        template: str | Callable[[dict], str] | None,
        *,
        metric: str = "f1",
        answers_key: str = "answers",
        max_new_tokens: int = 32,
        stop: list[str] | None = ("\n",),
        name: str | None = None,
    ) -> None:
        if metric not in ("f1", "em"):
            raise ValueError(f"metric must be 'f1' or 'em', got {metric!r}")
        self.template, self.metric, self.answers_key = template, metric, answers_key
        self.max_new_tokens, self.stop = max_new_tokens, list(stop) if stop else None
        self.name = name or f"squad_{metric}"

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[str]:
        # Greedy decoding (temperature 0), as in MeZO's SQuAD evaluation.
        return lm.generate(prompts_for(self.template, batch), max_new_tokens=self.max_new_tokens,
                           temperature=0.0, seed=seed, stop=self.stop)

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        outputs = check_texts(self.name, outputs, len(batch))
        fn = token_f1 if self.metric == "f1" else exact_match
        per = [fn(out, gold_answers(ex, self.answers_key)) for ex, out in zip(batch, outputs)]
        return mean_score(self.name, per)

