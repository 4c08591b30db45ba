"""Judges return -1/0/+1 (validated); PairwiseObjective averages them into a preference in [-1, 1]."""

import pytest

from objectives import (CallableJudge, InputJudge, Judge, ObjectiveError, PairwiseObjective, Reward,
                        RewardJudge, preference)


def shorter_wins(prompt, a, b):
    return (len(a) < len(b)) - (len(a) > len(b))


def test_callable_judge_and_batch():
    j = CallableJudge(shorter_wins)
    assert isinstance(j, Judge)
    assert j.compare("p", "ab", "abc") == 1 and j.compare("p", "abc", "ab") == -1 and j.compare("p", "x", "y") == 0
    assert j.compare_batch(["p"] * 3, ["a", "aaa", "aa"], ["aa", "a", "bb"]) == [1, -1, 0]
    with pytest.raises(ObjectiveError, match=r"bad: verdict\[0\] is 2"):
        CallableJudge(lambda p, a, b: 2, name="bad").compare("p", "a", "b")
    with pytest.raises(ObjectiveError, match=r"verdict\[0\] is True"):
        CallableJudge(lambda p, a, b: True, name="bad").compare("p", "a", "b")


def test_reward_judge_tolerance_and_none():
    def count_bang(prompts, completions, **kwargs):
        return [None if c == "?" else float(c.count("!")) for c in completions]

    j = RewardJudge(count_bang, tol=0.5)
    assert j.compare_batch(["p"] * 4, ["!!", "!", "a!", "?"], ["!", "!!", "b!", "!"]) == [1, -1, 0, 0]
    assert RewardJudge(Reward(count_bang).fn).compare("p", "!", "") == 1
    assert RewardJudge(lambda prompts, completions: [0.0, 0.4], tol=0.5).compare("p", "a", "b") == 0
    assert RewardJudge(lambda prompts, completions: [0.0, 0.6], tol=0.5).compare("p", "a", "b") == -1


def test_input_judge_reads_answers_and_retries():
    answers = iter(["maybe", "B"])
    asked = []
    j = InputJudge(ask=lambda msg: asked.append(msg) or next(answers))
    assert j.compare("Q?", "first", "second") == -1
    assert len(asked) == 2 and "first" in asked[0] and "second" in asked[0]
    with pytest.raises(ObjectiveError, match="no valid answer"):
        InputJudge(ask=lambda msg: "?", max_retries=2).compare("Q", "a", "b")


def test_pairwise_objective_mean_preference():
    obj = PairwiseObjective(CallableJudge(shorter_wins), template="{q}")
    batch = [{"q": "1"}, {"q": "2"}, {"q": "3"}, {"q": "4"}]
    assert obj.compare(batch, ["a", "a", "aaa", "b"], ["aa", "aa", "a", "b"]) == pytest.approx(0.25)
    assert obj.compare(batch[:1], ["a"], ["aa"]) == 1.0
    with pytest.raises(ObjectiveError, match=r"outs_minus has length 1, expected 4"):
        obj.compare(batch, ["a"] * 4, ["a"])


def test_preference_round_needs_both_sides():
    rnd = preference(object(), CallableJudge(shorter_wins), [{"prompt": "p"}], seed_plus=3)
    assert rnd.seed_minus == 3  # shared sampling seed by default
    with pytest.raises(ObjectiveError, match="call plus\\(\\) and minus\\(\\)"):
        rnd.compare()
