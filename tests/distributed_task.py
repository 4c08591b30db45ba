"""Objective factories for the Ray tests: importable by worker processes as `tests.distributed_task:...`.

Real objectives (label-word cross-entropy of the built-in sentiment task on whatever model the config
names), plus one that raises once, on whichever worker claims a marker file first.
"""

from __future__ import annotations

import os

from objectives.builtin import sentiment_examples
from objectives.likelihood import NegativeLogLikelihood

WORDS = {0: " terrible", 1: " great"}


def label_nll() -> NegativeLogLikelihood:
    """Continuous, so a one-ulp weight difference shows in the values: -log p(label word | sentence)."""
    return NegativeLogLikelihood(lambda ex: f"{ex['sentence']} It was", target=lambda ex: WORDS[ex["label"]])


class FailsOnce:
    """The label NLL, except that the first evaluation to claim (delete) `marker` raises."""

    maximize = False
    name = "fails_once"

    def __init__(self, marker: str):
        self.inner, self.marker = label_nll(), marker

    def evaluate(self, lm, batch, seed=None):
        try:
            os.unlink(self.marker)  # atomic: exactly one process wins
        except FileNotFoundError:
            return self.inner.evaluate(lm, batch, seed=seed)
        raise RuntimeError("scorer crashed (test marker claimed)")


def sentiment_nll(n_train: int = 24, n_val: int = 8, fail_marker: str | None = None) -> dict:
    train, val = sentiment_examples("train", 0)[:n_train], sentiment_examples("validation", 0)[:n_val]
    objective = FailsOnce(fail_marker) if fail_marker else label_nll()
    return {"train": train, "val": val, "objective": objective, "val_objective": label_nll()}
