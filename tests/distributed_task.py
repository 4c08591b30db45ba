"""Objective factories for the Ray tests: importable by worker processes as `tests.distributed_task:...`.

A real objective (label-word cross-entropy of the built-in sentiment task on whatever model the config
names) with optional faults: a delay per evaluation, and marker files that make the first evaluation to
claim them raise or hang, on whichever worker gets there first.
"""

from __future__ import annotations

import os
import time

from objectives.builtin import sentiment_examples
from objectives.likelihood import NegativeLogLikelihood

WORDS = {0: " terrible", 1: " great"}


def label_nll() -> NegativeLogLikelihood:
    """Continuous, so a one-ulp weight difference shows in the values: -log p(label word | sentence)."""
    return NegativeLogLikelihood(lambda ex: f"{ex['sentence']} It was", target=lambda ex: WORDS[ex["label"]])


def claim(marker: str | None) -> bool:
    """True for exactly one caller across processes: the one whose unlink of `marker` succeeds."""
    if not marker:
        return False
    try:
        os.unlink(marker)
        return True
    except FileNotFoundError:
        return False


class Faulty:
    """The label NLL, slowed by `delay` seconds per call; raises or hangs once when a marker file is claimed."""

    maximize = False
    name = "label_nll"

    def __init__(self, delay: float, fail_marker: str | None, hang_marker: str | None):
        self.inner, self.delay, self.fail_marker, self.hang_marker = label_nll(), delay, fail_marker, hang_marker

    def evaluate(self, lm, batch, seed=None):
        time.sleep(self.delay)
        if claim(self.fail_marker):
            raise RuntimeError("scorer crashed (test marker claimed)")
        if claim(self.hang_marker):
            time.sleep(3600)
        return self.inner.evaluate(lm, batch, seed=seed)


def sentiment_nll(n_train: int = 24, n_val: int = 8, delay: float = 0.0, fail_marker: str | None = None,
                  hang_marker: str | None = None) -> dict:
    train, val = sentiment_examples("train", 0)[:n_train], sentiment_examples("validation", 0)[:n_val]
    faulty = delay or fail_marker or hang_marker
    objective = Faulty(delay, fail_marker, hang_marker) if faulty else label_nll()
    return {"train": train, "val": val, "objective": objective, "val_objective": label_nll()}


def later_in_alphabet(prompt: str, a: str, b: str) -> int:
    """A rule judge that rarely ties: +1 if answer a sorts after answer b."""
    return (a > b) - (a < b)


def sentiment_pairwise(n_train: int = 24, n_val: int = 8) -> dict:
    """Pairwise preference on generated continuations; validation by the label NLL (a number)."""
    from objectives import CallableJudge, Generation, PairwiseObjective

    pref = PairwiseObjective(CallableJudge(later_in_alphabet), template="{sentence}",
                             generation=Generation(max_new_tokens=6, temperature=0.7))
    train, val = sentiment_examples("train", 0)[:n_train], sentiment_examples("validation", 0)[:n_val]
    return {"train": train, "val": val, "objective": pref, "val_objective": label_nll()}


def answer_length(prompts, completions, **_):
    return [float(len(c)) for c in completions]


def sentiment_pairwise_text(n_train: int = 24, n_val: int = 8) -> dict:
    """The pairwise task validated by a reward over greedy answers: its validation carries text (samples.jsonl)."""
    from objectives import Generation, Reward

    task = sentiment_pairwise(n_train, n_val)
    task["val_objective"] = Reward(answer_length, generation=Generation(max_new_tokens=6), template="{sentence}")
    return task


class HardestRows:
    """The label NLL trained on rounds it draws itself (as BestOfN does): every `steps_per_round` steps the trainer
    calls `refresh` at the current weights, which keeps the `keep` rows of a seeded sample that score worst."""

    maximize = False
    name = "hardest_rows_nll"

    def __init__(self, keep: int, steps_per_round: int):
        self.inner, self.keep, self.steps_per_round = label_nll(), keep, steps_per_round

    def evaluate(self, lm, batch, seed=None):
        return self.inner.evaluate(lm, batch, seed=seed)

    def refresh(self, lm, rows, *, seed):
        import random

        sample = random.Random(seed).sample(rows, min(len(rows), 2 * self.keep))
        nll = self.inner.evaluate(lm, sample).per_example
        order = sorted(range(len(sample)), key=lambda i: (-nll[i], i))[: self.keep]
        return [sample[i] for i in order], {"kept": len(order), "hardest_nll": nll[order[0]]}


def sentiment_rounds(n_train: int = 24, n_val: int = 8, keep: int = 6, steps_per_round: int = 2) -> dict:
    """Rounds drawn at the weights (the data each step sees depends on the weights), validation by the label NLL."""
    train, val = sentiment_examples("train", 0)[:n_train], sentiment_examples("validation", 0)[:n_val]
    return {"train": train, "val": val, "objective": HardestRows(keep, steps_per_round), "val_objective": label_nll()}
