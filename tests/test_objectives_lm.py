"""evaluate() paths against a real tiny random Llama wrapped in TransformersLM (fixtures from conftest.py)."""

import pytest
import torch

from blackbox_zo.lm import TransformersLM
from blackbox_zo.step.estimators import Pairwise
from objectives import (
    CallableJudge,
    GeneratedLabelClassifier,
    Generation,
    LabelWordClassifier,
    MultipleChoice,
    NegativeLogLikelihood,
    PairwiseObjective,
    Reward,
    SquadObjective,
    get_task,
    preference,
)

BATCH = [{"sentence": "This movie was great.", "label": "1"}, {"sentence": "That film was terrible.", "label": "0"},
         {"sentence": "one two three", "label": "1"}, {"sentence": "The quick brown fox", "label": "0"}]


@pytest.fixture
def lm(tiny_llama):
    model, tok = tiny_llama
    return TransformersLM(model, tok, batch_size=8, use_chat_template=False)


def test_label_word_classifier_matches_argmax_of_logprobs(lm):
    task = get_task("sst2")
    prompts = [task.prompt(ex) for ex in BATCH]
    logprobs = lm.label_word_logits(prompts, ["terrible", "great"])
    expected = [["0", "1"][int(i)] for i in logprobs.argmax(dim=1)]
    s = task.objective().evaluate(lm, BATCH)
    assert s.info["predictions"] == expected
    assert s.value == pytest.approx(sum(p == ex["label"] for p, ex in zip(expected, BATCH)) / 4)
    # batch calibration: argmax of logprobs minus the column means
    cal = task.objective(calibrate="batch").evaluate(lm, BATCH)
    centred = logprobs - logprobs.mean(dim=0, keepdim=True)
    assert cal.info["predictions"] == [["0", "1"][int(i)] for i in centred.argmax(dim=1)]
    cf = task.objective(calibrate="content_free").evaluate(lm, BATCH)
    base = lm.label_word_logits(["N/A It was"], ["terrible", "great"])
    assert cf.info["predictions"] == [["0", "1"][int(i)] for i in (logprobs - base).argmax(dim=1)]


def test_nll_evaluate_and_loss_sign(lm):
    batch = [{"q": "What is the capital of France?", "a": " Paris."}, {"q": "one two", "a": " three"}]
    obj = NegativeLogLikelihood("{q}", "a")
    s = obj.evaluate(lm, batch)
    ref = lm.loglik([b["q"] for b in batch], [b["a"] for b in batch], reduce="mean")
    assert s.per_example == pytest.approx([-v for v in ref]) and s.value > 0
    assert obj.loss(lm, batch) == pytest.approx(s.value)  # minimised as is
    assert LabelWordClassifier("{q}", {0: "great", 1: "terrible"}).maximize


def test_multiple_choice_evaluate(lm):
    prompts_choices = [("The quick brown", [" fox jumps", " dog lazy", " France"])]
    logliks = lm.choice_logliks([p for p, _ in prompts_choices], [c for _, c in prompts_choices], reduce="mean")[0]
    best = max(range(3), key=logliks.__getitem__)
    right = [{"premise": "The quick brown", "choices": prompts_choices[0][1], "label": best}]
    wrong = [{**right[0], "label": (best + 1) % 3}]
    assert MultipleChoice("{premise}").evaluate(lm, right).value == 1.0
    assert MultipleChoice("{premise}").evaluate(lm, wrong).value == 0.0


def test_squad_and_generated_label_use_greedy_generations(lm):
    batch = [{"title": "T", "context": "Paris is in France.", "question": "Where is Paris?", "answers": ["x"]}]
    task = get_task("squad")
    out = lm.generate([task.prompt(batch[0])], max_new_tokens=6, stop=["\n"])[0]
    obj = SquadObjective(task.template, max_new_tokens=6)
    assert obj.evaluate(lm, [{**batch[0], "answers": [out]}]).value == 1.0  # its own answer is exact
    greedy = lm.generate([BATCH[0]["sentence"] + " It was"], max_new_tokens=4)[0]
    gen = GeneratedLabelClassifier("{sentence} It was", {0: "terrible", 1: "great"}, max_new_tokens=4,
                                   parse=lambda text: 1 if text == greedy else 0)
    assert gen.evaluate(lm, BATCH[:1]).value == 1.0  # label 1 iff the parsed text is the greedy output


def test_reward_seed_shared_between_calls(lm):
    seen = []

    def record(prompts, completions, **kwargs):
        seen.append(completions)
        return [float(len(c)) for c in completions]

    r = Reward(record, template="{sentence}", generation=Generation(max_new_tokens=5, temperature=1.0))
    a, b, c = (r.evaluate(lm, BATCH, seed=s).value for s in (7, 7, 8))
    assert seen[0] == seen[1] and a == b  # same seed -> same samples -> same reward
    assert seen[0] != seen[2]
    assert seen[0] == lm.generate([ex["sentence"] for ex in BATCH], max_new_tokens=5, temperature=1.0, seed=7)


def test_preference_round_between_perturbed_weights(lm):
    judge = CallableJudge(lambda p, a, b: (len(a) > len(b)) - (len(a) < len(b)), name="longer")
    batch = [{"prompt": ex["sentence"]} for ex in BATCH]
    rnd = preference(lm, judge, batch, seed_plus=3, generation=Generation(max_new_tokens=5, temperature=1.0))
    params = [p for p in lm.model.parameters()]
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    z = [torch.randn(p.shape, generator=gen) for p in params]
    with torch.no_grad():
        for p, d in zip(params, z):
            p.add_(d, alpha=0.5)  # theta + eps*z
        plus = rnd.plus()
        for p, d in zip(params, z):
            p.add_(d, alpha=-1.0)  # theta - eps*z
        minus = rnd.minus()
        for p, s in zip(params, saved):
            p.copy_(s)
    expected = sum((len(a) > len(b)) - (len(a) < len(b)) for a, b in zip(plus, minus)) / len(batch)
    assert rnd.compare() == pytest.approx(expected)
    assert PairwiseObjective(judge).compare(batch, plus, minus) == pytest.approx(expected)


def test_pairwise_objective_drives_engine_pairwise_estimator(lm):
    judge = CallableJudge(lambda p, a, b: (len(a) > len(b)) - (len(a) < len(b)), name="longer")
    obj = PairwiseObjective(judge, template="{sentence}", generation=Generation(max_new_tokens=4, temperature=1.0))
    est = Pairwise(compare=obj.compare_outputs)
    plus, minus = obj.generate(lm, BATCH[:2], seed=1), obj.generate(lm, BATCH[:2], seed=2)
    [pref] = est.reduce([plus, minus])
    assert pref == pytest.approx(obj.compare(BATCH[:2], plus, minus))
    assert est.reduce([plus, plus]) == [0.0]  # identical outputs tie
