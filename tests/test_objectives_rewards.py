"""TRL-style rewards: keyword columns, async functions, None handling, weighted sums, VADER, evaluate modules."""

import asyncio

import pytest

from objectives import EvaluateMetric, ObjectiveError, Reward, WeightedSum, vader_reward
from objectives.rewards import call_reward

BATCH = [{"prompt": "Say 3", "answer": "3"}, {"prompt": "Say 5", "answer": "5"}, {"prompt": "Say 7", "answer": "7"}]
OUTS = ["3", "five", "7"]


def correctness(prompts, completions, answer, **kwargs):
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]


def test_columns_arrive_as_keyword_arguments():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(kwargs, prompts=prompts, completions=completions)
        return [0.0] * len(prompts)

    Reward(spy, template="{prompt}!").score(BATCH, OUTS)
    assert seen["answer"] == ["3", "5", "7"] and "prompt" not in seen  # TRL: prompt is positional only
    assert seen["prompts"] == ["Say 3!", "Say 5!", "Say 7!"] and seen["completions"] == OUTS
    assert Reward(correctness).score(BATCH, OUTS).value == pytest.approx(2 / 3)


def test_async_reward_awaited_outside_and_inside_a_running_loop():
    async def slow_correctness(prompts, completions, answer, **kwargs):
        await asyncio.sleep(0.01)
        return correctness(prompts, completions, answer)

    r = Reward(slow_correctness)
    assert r.name == "slow_correctness"
    assert r.score(BATCH, OUTS).per_example == [1.0, 0.0, 1.0]

    async def inside():  # e.g. a notebook: a loop is already running
        return r.score(BATCH, OUTS).value
    assert asyncio.run(inside()) == pytest.approx(2 / 3)

    async def broken(prompts, completions, **kwargs):
        raise RuntimeError("judge offline")
    with pytest.raises(RuntimeError, match="judge offline"):
        Reward(broken).score(BATCH, OUTS)


def test_weighted_sum_nansum_rule():
    def only_numeric(prompts, completions, **kwargs):  # does not apply to non-digit completions
        return [float(c) if c.isdigit() else None for c in completions]

    def length(prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]

    ws = WeightedSum([Reward(correctness), Reward(only_numeric), Reward(length)], [2.0, 0.5, -1.0])
    s = ws.score(BATCH, OUTS)
    # ex0: 2*1 + 0.5*3 - 1 = 2.5; ex1: 2*0 + (None) - 4 = -4; ex2: 2 + 3.5 - 1 = 4.5
    assert s.per_example == pytest.approx([2.5, -4.0, 4.5])
    assert s.value == pytest.approx(1.0)
    assert s.info["components"]["length"] == pytest.approx(2.0)

    nothing = WeightedSum([Reward(only_numeric)])
    assert nothing.score(BATCH, ["x", "5", "y"]).per_example == [None, 5.0, None]
    with pytest.raises(ValueError, match="one finite weight per reward"):
        WeightedSum([Reward(correctness)], [1.0, 2.0])


def test_vader_positivity_orders_sentiment():
    s = vader_reward().score([{"prompt": "Review:"}] * 3,
                             ["A wonderful, great film!", "It is a film.", "Terrible, awful and boring."])
    pos, neutral, neg = s.per_example
    assert pos > 0.5 and neutral == 0.0 and neg < -0.5
    assert s.name == "vader_positivity"


class LocalExactMatch:
    """The shape of an `evaluate` module (evaluate.load("/local/path")): name + compute(predictions, references)."""

    name = "exact_match"

    def __init__(self):
        self.calls = 0

    def compute(self, *, predictions, references, ignore_case=False):
        self.calls += 1
        norm = (lambda s: s.lower()) if ignore_case else (lambda s: s)
        hits = sum(norm(p) == norm(r) for p, r in zip(predictions, references))
        return {"exact_match": hits / len(predictions)}


def test_evaluate_module_adapter():
    module = LocalExactMatch()
    batch = [{"prompt": "a", "reference": "Yes"}, {"prompt": "b", "reference": "no"}]
    obj = EvaluateMetric(module, prediction=str.strip)
    s = obj.score(batch, [" Yes", "No"])
    assert s.value == 0.5 and s.per_example == [None, None] and s.name == "exact_match" and module.calls == 1
    per = EvaluateMetric(module, per_example=True, ignore_case=True, prediction=str.strip).score(batch, [" Yes", "No"])
    assert per.value == 1.0 and per.per_example == [1.0, 1.0] and module.calls == 4  # batch + 2 singles

    with pytest.raises(ObjectiveError, match="exact_match: compute\\(\\) has no 'f1'"):
        EvaluateMetric(module, result_key="f1").score(batch, ["Yes", "no"])


def test_call_reward_with_empty_columns():
    assert call_reward(lambda prompts, completions: [1.0] * len(prompts), ["p"], ["c"], []) == [1.0]


METRIC_SCRIPT = '''
import datasets
import evaluate


class LocalAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="accuracy", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        return {"accuracy": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}
'''


def test_real_evaluate_module_loaded_from_local_path(tmp_path):
    evaluate = pytest.importorskip("evaluate", reason="`evaluate` not installed")
    folder = tmp_path / "local_accuracy"
    folder.mkdir()
    (folder / "local_accuracy.py").write_text(METRIC_SCRIPT)
    module = evaluate.load(str(folder))  # a local path: no hub access
    batch = [{"prompt": "a", "reference": "great"}, {"prompt": "b", "reference": "terrible"},
             {"prompt": "c", "reference": "great"}]
    s = EvaluateMetric(module, prediction=str.strip, per_example=True).score(batch, [" great", " great", "great "])
    assert s.value == pytest.approx(2 / 3) and s.per_example == [1.0, 0.0, 1.0]
    assert s.name == "local_accuracy"
