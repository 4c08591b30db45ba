"""The residual steering space on tiny random Llama / GPT-2 models: what is tuned, what stays, that it steers."""

from __future__ import annotations

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.weights.steering import layer_list, steering_space

PROMPT = "I think the movie was"


def logits(model, tok, text=PROMPT):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits[0, -1]


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_a_zero_vector_changes_nothing_and_a_set_one_shifts_the_layer_output(which, request):
    model, tok = request.getfixturevalue(which)
    base = logits(model, tok)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model, space = steering_space(model, tok, layers=[0])
    assert list(space.tensors) == [n for n in space.tensors if n.endswith(".steer")] and space.numel() == 32
    assert torch.equal(logits(model, tok), base)  # zero vectors: the same model
    block = layer_list(model)[0]
    seen = []
    block.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    logits(model, tok)
    unsteered = seen[-1].clone()
    with torch.no_grad():
        block.steer.fill_(0.5)
    assert not torch.allclose(logits(model, tok), base)
    shifted = seen[-1] - unsteered  # hooks run in order: the steering hook came first, so this sees its output
    assert torch.allclose(shifted, torch.full_like(shifted, 0.5 * float(block.steer_scale)), atol=1e-5)
    assert float(block.steer_scale) > 0
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items() if k in weights)


def test_mezo_defaults_over_the_steering_space_raise_a_token_logit_and_leave_the_weights_alone(tiny_llama):
    model, tok = tiny_llama
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    target = int(logits(model, tok).argmin())  # the least likely next token
    model, space = steering_space(model, tok, layers=[1])
    start = float(logits(model, tok).log_softmax(-1)[target])
    opt = bz.MeZO(space, maximize=True, seed=0)  # the Spec defaults: the space's units are chosen for them
    for _ in range(100):
        opt.step(lambda: float(logits(model, tok).log_softmax(-1)[target]))
    end = float(logits(model, tok).log_softmax(-1)[target])
    assert end > start + 3.0, (start, end)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items() if k in weights)


def test_the_default_layers_are_a_third_and_two_thirds_of_the_way_up():
    from blackbox_zo.weights.steering import default_layers

    assert default_layers(30) == [10, 20] and default_layers(2) == [0, 1] and default_layers(1) == [0]


def test_bad_layers_and_a_second_vector_on_one_layer_are_named(tiny_llama):
    model, tok = tiny_llama
    for bad in ([2], [-1, 1], []):
        with pytest.raises(ValueError, match="distinct indexes of the model's 2 decoder layers"):
            steering_space(model, tok, layers=bad)
    with pytest.raises(ValueError, match="tokenizer"):
        steering_space(model, None, layers=[0])
    steering_space(model, tok, layers=[0])
    with pytest.raises(ValueError, match="layer 0 already has a steering vector"):
        steering_space(model, tok, layers=[1, 0])
    assert not hasattr(layer_list(model)[1], "steer")  # the refused call added nothing
    with pytest.raises(ValueError, match="found no decoder layers"):
        steering_space(torch.nn.Linear(2, 2), tok)


def test_the_trunk_cache_keeps_the_steering_of_the_layers_it_runs(tiny_llama):
    """A vector after layer 1 is a tuned tensor of layer 1: the cache holds layer 1's inputs and the hook still runs."""
    from blackbox_zo.lm.trunk import TrunkCache, trunk_start

    model, tok = tiny_llama
    model, space = steering_space(model, tok, layers=[1])
    assert trunk_start(model, space.tensors.values()) == 1
    cache = TrunkCache(model, 1, strict=True)  # strict: a shortened forward that misses the hook raises
    inputs = tok(["I think the movie was", "a b c"], return_tensors="pt", padding=True)
    inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    before = cache.logits(dict(inputs), keep=1)
    space.apply([(7, 0.5)])  # move the steering vector along the direction of seed 7
    after = cache.logits(dict(inputs), keep=1)
    assert cache.hits == 1 and not torch.allclose(before, after)
    assert torch.allclose(after, model(**inputs, logits_to_keep=1).logits[:, -1:], atol=1e-5)
