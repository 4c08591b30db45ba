"""The objective contract: each built-in kind of objective gets the traits its behaviour needs, read once.

Real objectives from objectives/ (a reward, an NLL, a judge's pairwise objective, BestOfN, a win-rate) and
plain user classes that satisfy the Protocols structurally, without importing anything from blackbox_zo.
"""

from __future__ import annotations

import dataclasses

import pytest

from blackbox_zo.errors import ObjectiveError
from blackbox_zo.setup.traits import ObjectiveTraits, traits_of, with_traits
from objectives import BestOfN, CallableJudge, NegativeLogLikelihood, PairwiseObjective, Reward
from objectives.judges import Generations

ROWS = [{"prompt": "Hi", "context": "Hi", "target": " there"}]


def length(prompts, completions, **_):
    return [float(len(c)) for c in completions]


class PlainScorer:
    """A user's objective: evaluate only, no name, no maximize."""

    def evaluate(self, lm, batch, *, seed=None):
        return 1.0


def test_each_kind_of_objective_gets_its_traits():
    pairwise = PairwiseObjective(CallableJudge(lambda p, a, b: 0))
    assert traits_of(Reward(length, name="len")) == ObjectiveTraits("len", True, False, True, True, 0)
    assert traits_of(NegativeLogLikelihood("{context}", "target", name="nll")) == ObjectiveTraits(
        "nll", False, False, True, False, 0)
    assert traits_of(pairwise) == ObjectiveTraits(pairwise.name, True, True, False, True, 0)
    assert traits_of(BestOfN(Reward(length), steps_per_round=5)).steps_per_round == 5
    win_rate = traits_of(pairwise.win_rate(Generations(["a"], [{"prompt": "Hi"}], ["Hi"], seed=0)))
    assert (win_rate.scores, win_rate.pairwise, win_rate.takes_reference) == (True, False, False)  # validates pairwise
    assert traits_of(PlainScorer()) == ObjectiveTraits("PlainScorer", True, False, True, False, 0)  # the defaults


def test_an_object_that_neither_scores_nor_generates_is_refused_by_name():
    class Nothing:
        name = "nothing"

    with pytest.raises(ObjectiveError, match="^objective nothing: has neither evaluate"):
        traits_of(Nothing())


def test_traits_are_frozen_and_the_task_gets_them_for_training_and_validation():
    nll = NegativeLogLikelihood("{context}", "target")
    with pytest.raises(dataclasses.FrozenInstanceError):
        traits_of(nll).maximize = True
    given = {"train": ROWS, "objective": Reward(length)}
    task = with_traits(given)
    assert "traits" not in given and task["val_traits"] is task["traits"]  # no val_objective: the objective validates
    task = with_traits({**given, "val_objective": nll})
    assert task["traits"].maximize and not task["val_traits"].maximize
