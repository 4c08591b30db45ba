"""Judges return -1/0/+1 (validated); PairwiseObjective averages them into a preference in [-1, 1]."""

import pytest

from objectives import CallableJudge, InputJudge, Judge, ObjectiveError, PairwiseObjective, Reward, RewardJudge, preference
from objectives.judges import Generations


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


def test_every_judge_is_the_engines_compare():
    """judge(outs_plus, outs_minus) -> mean verdict in [-1, 1]: the signature MeZO(compare=...) calls."""
    assert CallableJudge(shorter_wins)(["a", "aaa", "b", "bb"], ["aa", "a", "b", "b"]) == pytest.approx(-0.25)
    assert RewardJudge(lambda prompts, completions: [len(c) for c in completions])(["aaa"], ["a"]) == 1.0
    assert InputJudge(ask=lambda msg: "b")(["x", "y"], ["z", "w"]) == -1.0
    obj = PairwiseObjective(CallableJudge(shorter_wins), template="Q: {q}")
    with pytest.raises(ObjectiveError, match="non-empty lists"):
        CallableJudge(shorter_wins)("a", "b")
    with pytest.raises(ObjectiveError, match="outs_minus has length 1, expected 2"):
        CallableJudge(shorter_wins)(["a", "b"], ["c"])
    # outputs of generate() carry their prompts, so the judge sees them; plain lists give it ""
    seen = []
    judge = CallableJudge(lambda p, a, b: seen.append(p) or 0)
    plus = Generations(["a"], [{"q": "1"}], ["Q: 1"])
    assert judge(plus, Generations(["b"], [{"q": "1"}], ["Q: 1"])) == 0.0 and seen == ["Q: 1"]
    assert judge(["a"], ["b"]) == 0.0 and seen[-1] == ""
    with pytest.raises(ObjectiveError, match="different prompts"):
        judge(plus, Generations(["b"], [{"q": "2"}], ["Q: 2"]))
    assert obj(plus, Generations(["bb"], [{"q": "1"}], ["Q: 1"])) == 1.0  # the objective is a compare too


def test_readme_pairwise_api_tunes_a_real_model(tiny_llama):
    """bz.MeZO(model, estimator="pairwise", compare=judge) with a CallableJudge steps and moves the weights."""
    import torch

    import blackbox_zo as bz
    from blackbox_zo.lm import TransformersLM
    from objectives import Generation

    model, tok = tiny_llama
    lm = TransformersLM(model, tok, batch_size=4)
    judge = CallableJudge(shorter_wins)
    pref = PairwiseObjective(judge, generation=Generation(max_new_tokens=6, temperature=1.0))
    batch = [{"prompt": p} for p in ("one two", "The quick", "What is", "This movie")]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = bz.MeZO(model, lr=0.5, eps=0.5, seed=0, estimator="pairwise", compare=judge)
    prefs = [opt.step(lambda: pref.generate(lm, batch, seed=step)) for step in range(3)]
    assert all((4 * p).is_integer() for p in prefs) and any(p != 0.0 for p in prefs)  # the mean of 4 verdicts
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_win_rate_against_the_base_outputs(tiny_llama):
    from blackbox_zo.lm import TransformersLM
    from objectives import Generation

    model, tok = tiny_llama
    lm = TransformersLM(model, tok, batch_size=4)
    pref = PairwiseObjective(CallableJudge(shorter_wins), generation=Generation(max_new_tokens=6, temperature=1.0))
    batch = [{"prompt": p} for p in ("one two", "The quick", "What is")]
    base = pref.generate(lm, batch, seed=7)
    rate = pref.win_rate(base)
    assert rate.evaluate(lm, batch, seed=8).value == 0.5  # the reference's seed 7 is reused: same weights, all ties
    assert pref.verdicts(batch, pref.generate(lm, batch, seed=8), base) != [0, 0, 0]  # seed 8 would not tie
    with pytest.raises(ObjectiveError, match="the batch the reference was generated for"):
        rate.evaluate(lm, batch[:2], seed=7)
