"""objectives.FluencyGuard: answers a frozen reference LM finds implausible lose before the judge is asked.

Real parts: a tiny random Llama as the reference (its own greedy answers are plausible to it, shuffled token soup
is not), a real InputJudge whose `ask` records what a person would be shown, and a batched low-rank pairwise step.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from blackbox_zo import MeZO
from blackbox_zo.lm import TransformersLM
from objectives import (
    CallableJudge,
    FluencyGuard,
    Generation,
    InputJudge,
    ObjectiveError,
    PairwiseObjective,
    reference_nll,
    repeated_trigrams,
)
from tests.conftest import make_tiny_llama

PROMPTS = ["Tell me about your day.", "What is a good breakfast?", "Why do birds sing?", "Name a colour."]


@pytest.fixture
def reference(tokenizer):
    model, tok = make_tiny_llama(tokenizer)
    return TransformersLM(model, tok, batch_size=4)


def own_answers(lm, prompts=PROMPTS):
    return Generation(max_new_tokens=8).run(lm, prompts)


def soup(lm, answers, seed=0):
    """Each answer's words shuffled with random vocabulary pieces: text the reference did not write."""
    rng = random.Random(seed)
    vocab = [t for t in lm.tokenizer.convert_ids_to_tokens(range(200, 4000)) if t.isalpha()]
    return [" ".join(rng.sample(vocab, 8)) for _ in answers]


def test_reference_prefers_its_own_answers_to_token_soup(reference):
    mine = own_answers(reference)
    other = soup(reference, mine)
    nll_mine, nll_other = reference_nll(reference, PROMPTS, mine), reference_nll(reference, PROMPTS, other)
    assert all(a < b for a, b in zip(nll_mine, nll_other)), (nll_mine, nll_other)
    # the same number loglik gives when read after the chat-templated prompt, as generate() continued it
    direct = reference.loglik([reference.prompt_text(p) for p in PROMPTS], mine, reduce="mean")
    assert nll_mine == pytest.approx([-v for v in direct])


def test_guard_decides_implausible_pairs_and_asks_the_judge_only_about_the_rest(reference):
    mine = own_answers(reference)
    other = soup(reference, mine)
    nll_mine = reference_nll(reference, PROMPTS, mine)
    nll_other = reference_nll(reference, PROMPTS, other)
    bound = (max(nll_mine) + min(nll_other)) / 2  # between the two groups
    shown = []

    def ask(message):  # a person who always prefers answer b
        shown.append(message)
        return "b"

    guard = FluencyGuard(InputJudge(ask), reference, max_nll=bound)
    # pairs 0-1: soup vs own answer (the guard decides: the own answer wins on either side);
    # pair 2: two soups (the lower NLL wins); pair 3: two fluent answers (the person decides: b)
    a = [other[0], mine[1], other[2], mine[3]]
    b = [mine[0], other[1], soup(reference, mine, seed=1)[2], mine[0]]
    verdicts = guard.compare_batch(PROMPTS, a, b)
    nll_b2 = reference_nll(reference, PROMPTS[2:3], b[2:3])[0]
    assert verdicts[:2] == [-1, 1]
    assert verdicts[2] == (1 if nll_other[2] < nll_b2 else -1)
    assert verdicts[3] == -1 and len(shown) == 1 and mine[3] in shown[0]


def test_guard_is_the_pairwise_compare(reference):
    mine = own_answers(reference)
    other = soup(reference, mine)
    bound = max(reference_nll(reference, PROMPTS, mine)) + 1e-3
    guard = FluencyGuard(CallableJudge(lambda p, x, y: 0), reference, max_nll=bound)
    assert guard(mine, other) == 1.0 and guard(other, mine) == -1.0 and guard(mine, mine) == 0.0


def test_calibrated_bound_is_the_quantile_of_the_reference_answers_plus_slack(reference):
    gen = Generation(max_new_tokens=8)
    guard = FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS, generation=gen,
                                    quantile=0.75, slack=0.25)
    nll = reference_nll(reference, PROMPTS, gen.run(reference, PROMPTS, 0))
    assert guard.max_nll == pytest.approx(np.quantile(nll, 0.75) + 0.25, abs=2e-3)
    assert sum(v <= guard.max_nll for v in nll) >= 3  # the untuned model's answers pass


@pytest.mark.parametrize("bad", [0, -1.0, True, "2"])
def test_bad_bound_is_named(reference, bad):
    with pytest.raises(ValueError, match="max_nll"):
        FluencyGuard(CallableJudge(lambda p, x, y: 0), reference, max_nll=bad)


def test_calibration_needs_prompts(reference):
    with pytest.raises(ObjectiveError, match="at least 2 prompts"):
        FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS[:1])


def guarded_run(tokenizer, evaluate):
    """Two pairwise steps over all weights (low-rank directions) through a calibrated guard; returns
    (preferences, the reference model's weights before and after)."""
    from blackbox_zo import ParamSpace

    model, tok = make_tiny_llama(tokenizer)
    ref_model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in ref_model.state_dict().items()}
    lm, reference = TransformersLM(model, tok, batch_size=4), TransformersLM(ref_model, tok, batch_size=4)
    longer = CallableJudge(lambda p, a, b: (len(a) > len(b)) - (len(a) < len(b)), name="longer")
    guard = FluencyGuard.calibrated(longer, reference, PROMPTS, generation=Generation(max_new_tokens=6), slack=0.0)
    pref = PairwiseObjective(guard, generation=Generation(max_new_tokens=6))
    batch = [{"prompt": p} for p in PROMPTS]
    opt = MeZO(ParamSpace(model, noise="lowrank", evaluate=evaluate), estimator="pairwise", compare=guard, n=2,
               seed=0, eps=0.5)
    assert opt.engine.batched == (evaluate == "batched")
    prefs = [opt.step(lambda: pref.generate(lm, batch, seed=0)) for _ in range(3)]
    return prefs, before, ref_model.state_dict()


def test_guarded_pairwise_steps_batched_equal_in_place_and_leave_the_reference_untouched(tokenizer):
    batched, before, after = guarded_run(tokenizer, "batched")
    walked, _, _ = guarded_run(tokenizer, "inplace")
    assert batched == walked  # the reference scores the same answers inside a population as outside one
    assert any(p != 0 for p in batched)  # the guard or the judge decided something
    assert all(torch.equal(before[k], v) for k, v in after.items())


def test_calibrated_from_given_answers_reads_them_not_its_own(reference):
    mine = own_answers(reference)
    other = soup(reference, mine)  # answers the reference would never write: a much higher bound
    guard = FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS, answers=other,
                                    quantile=0.5, slack=0.0)
    assert guard.max_nll == pytest.approx(np.quantile(reference_nll(reference, PROMPTS, other), 0.5), abs=2e-3)
    assert guard.max_nll > max(reference_nll(reference, PROMPTS, mine))
    with pytest.raises(ObjectiveError, match="answers has length 3"):
        FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS, answers=other[:3])


def test_repeated_trigrams_counts_loops():
    assert repeated_trigrams("I am a I am a I am a") == pytest.approx(4 / 7)
    assert repeated_trigrams("the " * 16) == pytest.approx(13 / 14)
    assert repeated_trigrams("My weekend is a mix of adventure and rest.") == 0.0
    assert repeated_trigrams("Two words") == 0.0  # no trigram at all


def test_a_loop_the_reference_reads_as_likely_loses_only_with_the_repeat_bound(reference):
    """A looping answer under the NLL bound passes the NLL guard and wins with a judge that likes it; with
    max_repeat it loses to the untuned answer before the judge is asked."""
    mine = own_answers(reference)
    loops = [" ".join([m.split()[0] if m.split() else "the"] * 12) for m in mine]  # one word, twelve times
    nll = reference_nll(reference, PROMPTS * 2, mine + loops)
    shorter_words = CallableJudge(lambda p, a, b: (len(a) < len(b)) - (len(a) > len(b)), name="shorter")
    loose = FluencyGuard(shorter_words, reference, max_nll=max(nll) + 1)  # every answer within the NLL bound
    assert loose.compare_batch(PROMPTS, loops, mine) == [shorter_words.compare(p, a, b)
                                                          for p, a, b in zip(PROMPTS, loops, mine)]
    strict = FluencyGuard(shorter_words, reference, max_nll=max(nll) + 1, max_repeat=0.2)
    assert strict.compare_batch(PROMPTS, loops, mine) == [-1] * len(PROMPTS)
    assert strict.compare_batch(PROMPTS, mine, loops) == [1] * len(PROMPTS)
    # two loops: both cross the repeat bound, so the lower NLL wins
    other_loops = [" ".join(["house"] * 12)] * len(PROMPTS)
    nll_other = reference_nll(reference, PROMPTS, other_loops)
    expect = [(a < b) - (a > b) for a, b in zip(nll[len(PROMPTS):], nll_other)]
    assert strict.compare_batch(PROMPTS, loops, other_loops) == expect


def test_calibrated_repeat_bound_is_the_quantile_of_the_answers_plus_slack(reference):
    answers = ["a b c a b c a b c", "one two three four", "x y z x y z", "fine words here today"]
    guard = FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS, answers=answers,
                                    quantile=0.75, repeat_slack=0.1)
    shares = [repeated_trigrams(a) for a in answers]
    assert guard.max_repeat == pytest.approx(np.quantile(shares, 0.75) + 0.1, abs=2e-3)
    assert FluencyGuard.calibrated(CallableJudge(lambda p, x, y: 0), reference, PROMPTS, answers=answers).max_repeat is None


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.2"])
def test_bad_repeat_bound_is_named(reference, bad):
    with pytest.raises(ValueError, match="max_repeat"):
        FluencyGuard(CallableJudge(lambda p, x, y: 0), reference, max_nll=2.0, max_repeat=bad)
