"""Every returned list is validated: wrong length, NaN/inf, None, non-numeric -> ObjectiveError naming objective and index."""

import math

import numpy as np
import pytest

from objectives import (
    LabelWordClassifier,
    NegativeLogLikelihood,
    ObjectiveError,
    Reward,
    SquadObjective,
    check_values,
    mean_score,
)

BATCH = [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}]


def reward_returning(values):
    def my_reward(prompts, completions, **kwargs):
        return values
    return Reward(my_reward)


@pytest.mark.parametrize("values, fragment", [
    ([1.0, 2.0], "length 2, expected 3"),
    ([1.0, float("nan"), 2.0], "[1] is not finite"),
    ([1.0, 2.0, math.inf], "[2] is not finite"),
    (["1.0", 2.0, 3.0], "[0] is not a number"),
    (5.0, "must be a list"),
])
def test_reward_validation_names_objective_and_index(values, fragment):
    with pytest.raises(ObjectiveError) as err:
        reward_returning(values).score(BATCH, ["a", "b", "c"])
    assert "my_reward" in str(err.value) and fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_none_allowed_for_rewards_but_not_all_none():
    s = reward_returning([1.0, None, 3.0]).score(BATCH, ["a", "b", "c"])
    assert s.per_example == [1.0, None, 3.0] and s.value == 2.0  # None excluded from the mean
    with pytest.raises(ObjectiveError, match="my_reward: every example returned None"):
        reward_returning([None, None, None]).score(BATCH, ["a", "b", "c"])


def test_bools_count_as_one_and_zero():
    assert reward_returning([True, False, True]).score(BATCH, ["a", "b", "c"]).per_example == [1.0, 0.0, 1.0]


def test_a_reward_that_raises_is_named():
    def broken_reward(prompts, completions, **kwargs):
        return [1 / 0 for _ in completions]

    with pytest.raises(ObjectiveError, match="broken_reward raised ZeroDivisionError: division by zero"):
        Reward(broken_reward).score(BATCH, ["a", "b", "c"])


def test_numpy_scalars_accepted():
    assert reward_returning(np.array([1, 2, 3], dtype=np.float32)).score(BATCH, ["a"] * 3).value == 2.0


def test_none_rejected_where_not_documented():
    with pytest.raises(ObjectiveError, match=r"cross_entropy: logliks\[1\] is None"):
        NegativeLogLikelihood(None, "prompt").score(BATCH, [-1.0, None, -2.0])
    with pytest.raises(ObjectiveError, match=r"nll: logliks\[0\] is not finite"):
        NegativeLogLikelihood(None, "prompt", reduce="sum").score(BATCH, [float("nan"), -1.0, -2.0])


def test_label_word_rows_validated_per_example():
    obj = LabelWordClassifier(None, {0: "bad", 1: "good"})
    batch = [{"prompt": "x", "label": 0}] * 2
    with pytest.raises(ObjectiveError, match=r"label_word_accuracy: logprobs\[1\]\[0\] is not finite"):
        obj.score(batch, [[0.0, -1.0], [float("-inf"), -1.0]])
    with pytest.raises(ObjectiveError, match=r"label_word_accuracy: logprobs\[0\] has length 3, expected 2"):
        obj.score(batch, [[0.0, -1.0, -2.0], [0.0, -1.0]])
    with pytest.raises(ObjectiveError, match="label_word_accuracy: logprobs has length 1, expected 2"):
        obj.score(batch, [[0.0, -1.0]])


def test_generations_must_be_strings():
    obj = SquadObjective(None)
    batch = [{"prompt": "q", "answers": ["a"]}] * 2
    with pytest.raises(ObjectiveError, match=r"squad_f1: generations\[1\] is not a string"):
        obj.score(batch, ["a", None])


def test_check_values_and_mean_score_directly():
    assert check_values("x", (1, 2.5), 2) == [1.0, 2.5]
    with pytest.raises(ObjectiveError, match=r"obj: values\[0\] is None"):
        check_values("obj", [None], 1)
    with pytest.raises(ObjectiveError, match="obj: every example returned None"):
        mean_score("obj", [None])


def test_unknown_gold_label_names_example():
    obj = LabelWordClassifier(None, {0: "bad", 1: "good"})
    with pytest.raises(ObjectiveError, match="label_word_accuracy: example 1: label '7' is not one of"):
        obj.score([{"prompt": "x", "label": 0}, {"prompt": "y", "label": "7"}], [[0.0, -1.0], [0.0, -1.0]])
    with pytest.raises(ObjectiveError, match="label_word_accuracy: example 0 has no 'label' column"):
        obj.score([{"prompt": "x"}], [[0.0, -1.0]])
