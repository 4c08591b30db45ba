"""The frontier benchmark's choice: per drift budget, the best dev checkpoint within it and within the fluency rule.

Why: the held-back number of each method is read at this checkpoint only, so a checkpoint past the budget or made
of broken text must never be chosen, whatever its reward.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from frontier import choose  # noqa: E402
from frontier_task import numbers_reward  # noqa: E402

TEXT = {"nll": 1.0, "repeated_trigrams": 0.0, "repeated_token_trigrams": 0.0, "distinct_2": 0.7}


def point(step, reward, kl, **text):
    return {"step": step, "reward": reward, "kl_exact": kl, **TEXT, **text}


def test_each_budget_takes_the_best_checkpoint_inside_it_and_inside_the_rule():
    start = point(0, 0.2, 0.0)
    curve = [start, point(5, 0.3, 0.04), point(10, 0.35, 0.09), point(15, 0.9, 0.15, repeated_token_trigrams=0.3),
             point(20, 0.5, 0.19), point(25, 0.8, 0.4)]
    assert choose(curve, start) == {"0.05": 5, "0.1": 10, "0.2": 20}  # 15 loops, 25 drifted past every budget


def test_a_budget_nothing_reaches_keeps_the_untuned_model():
    start = point(0, 0.2, 0.0)
    assert choose([start, point(5, 0.9, 0.3), point(10, 0.1, 0.01)], start) == {"0.05": 0, "0.1": 0, "0.2": 0}


def test_the_numbers_reward_counts_numbers_and_number_words():
    assert numbers_reward([], ["I have two cats and 3 dogs.", "Nothing here.", ""]) == [2 / 7, 0.0, 0.0]
