"""blackbox_zo.lm.UntunedLM: a steered or LoRA-tuned model read as it was before tuning, without a second copy.

Real parts: a tiny random Llama with real steering vectors and a real peft LoRA adapter; the reads are compared
with a second, untouched copy of the same weights, and a guarded pairwise run with either reference.
"""

from __future__ import annotations

import copy

import pytest
import torch

from blackbox_zo import MeZO, ParamSpace, lora_space, steering_space
from blackbox_zo.lm import LM, TransformersLM, UntunedLM
from objectives import CallableJudge, FluencyGuard, Generation, PairwiseObjective
from tests.conftest import make_tiny_llama

PROMPTS = ["Tell me about your day.", "What is a good breakfast?", "Why do birds sing?", "Name a colour."]
ANSWERS = [" It rained all day.", " Eggs and toast.", " To call mates.", " Blue."]


def reads(lm):
    """What a fluency reference uses: mean loglik of fixed answers, and greedy answers."""
    return lm.loglik(PROMPTS, ANSWERS, reduce="mean"), lm.generate(PROMPTS, max_new_tokens=6)


def moved(space, scale):
    """Every tensor of the space set away from its start (as tuning would leave it)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in space.tensors.values():
            t.add_(torch.randn(t.shape, generator=gen) * scale)


@pytest.mark.parametrize("kind", ["steering", "lora"])
def test_untuned_reads_equal_a_second_copy_and_the_tuned_reads_come_back(tokenizer, kind):
    model, tok = make_tiny_llama(tokenizer)
    copy_lm = TransformersLM(copy.deepcopy(model), tok, batch_size=4)  # the untouched weights
    if kind == "steering":
        model, space = steering_space(model, tok, layers=[0])
    else:
        model, space = lora_space(model, r=2)
    lm = TransformersLM(model, tok, batch_size=4)
    moved(space, 5.0)
    untuned = UntunedLM(lm, space)
    assert isinstance(untuned, LM)
    tuned_before = reads(lm)
    assert tuned_before != reads(copy_lm)  # the tuned model reads differently, so the comparison can fail
    assert reads(untuned) == reads(copy_lm)  # bitwise: the same computation as the copy
    assert reads(lm) == tuned_before  # switched back on after the call
    assert untuned.prompt_text(PROMPTS[0]) == lm.prompt_text(PROMPTS[0])


def test_a_space_over_the_weights_is_refused_with_the_tensor_named(tiny_llama):
    model, tok = tiny_llama
    space = ParamSpace(model, include="norm")
    with pytest.raises(ValueError, match=r"cannot switch off tensor 'model\.layers\.0\.input_layernorm\.weight'"):
        UntunedLM(TransformersLM(model, tok), space)


def guarded_steering_run(tokenizer, use_copy: bool):
    """Three guarded pairwise steps over steering vectors (batched population); the guard's reference is a second
    copy or the same model read untuned. Returns the preferences and the final vectors."""
    model, tok = make_tiny_llama(tokenizer)
    copy_model = copy.deepcopy(model)
    model, space = steering_space(model, tok, layers=[0, 1])
    lm = TransformersLM(model, tok, batch_size=4)
    reference = TransformersLM(copy_model, tok, batch_size=4) if use_copy else UntunedLM(lm, space)
    longer = CallableJudge(lambda p, a, b: (len(a) > len(b)) - (len(a) < len(b)), name="longer")
    guard = FluencyGuard.calibrated(longer, reference, PROMPTS, generation=Generation(max_new_tokens=6), slack=0.0)
    pref = PairwiseObjective(guard, generation=Generation(max_new_tokens=6))
    opt = MeZO(space, estimator="pairwise", compare=guard, n=2, seed=0, eps=0.5)
    assert opt.engine.batched
    prefs = [opt.step(lambda: pref.generate(lm, [{"prompt": p} for p in PROMPTS], seed=0)) for _ in range(3)]
    return prefs, [t.detach().clone() for t in space.tensors.values()]


def test_guard_over_the_untuned_view_steps_as_with_a_second_copy(tokenizer):
    with_copy, vectors_copy = guarded_steering_run(tokenizer, use_copy=True)
    viewed, vectors_view = guarded_steering_run(tokenizer, use_copy=False)
    assert any(p != 0 for p in with_copy)
    assert viewed == with_copy
    assert all(torch.equal(a, b) for a, b in zip(vectors_copy, vectors_view))
    assert any(v.abs().sum() > 0 for v in vectors_view)
