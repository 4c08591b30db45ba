"""Frozen-trunk cache: cached scoring equals full scoring, steps are unchanged, and a trunk write is never served stale."""

import pytest
import torch

from blackbox_zo import MeZO, ParamSpace
from blackbox_zo.lm import TransformersLM
from blackbox_zo.lm.trunk import first_tuned_layer, trunk_start

PROMPTS = ["the film was", "a long and tedious", "what a wonderful cast and a script", "no"]
WORDS = ["great", "terrible"]


def test_cached_scores_equal_full_scores_and_reuse_the_trunk(tiny_llama):
    model, tok = tiny_llama
    full = TransformersLM(model, tok, batch_size=2)
    for start in (1, 2):  # 2 = only the final norm is above the trunk
        cached = TransformersLM(model, tok, batch_size=2, trunk_cache=start)
        for _ in range(2):
            assert torch.allclose(cached.label_word_logits(PROMPTS, WORDS), full.label_word_logits(PROMPTS, WORDS),
                                  atol=1e-5)
            assert cached.loglik(PROMPTS, [" yes"] * 4) == pytest.approx(full.loglik(PROMPTS, [" yes"] * 4), abs=1e-4)
        cache = cached.trunk_cache
        assert cache.misses == 4 and cache.hits == 4  # 2 batches x 2 calls (label words, loglik) computed once each


def test_a_write_to_the_trunk_drops_the_cache(tiny_llama):
    model, tok = tiny_llama
    cached = TransformersLM(model, tok, batch_size=4, trunk_cache=1)
    before = cached.label_word_logits(PROMPTS, WORDS)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(3.0)  # in place, as the engine perturbs
    after = cached.label_word_logits(PROMPTS, WORDS)
    fresh = TransformersLM(model, tok, batch_size=4).label_word_logits(PROMPTS, WORDS)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh, atol=1e-5)
    assert cached.trunk_cache.misses == 2


def test_steps_over_the_top_layer_are_the_same_with_and_without_the_cache(tiny_llama):
    model, tok = tiny_llama
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {}
    for trunk in (None, 1):
        model.load_state_dict(start_state)
        lm = TransformersLM(model, tok, batch_size=4, trunk_cache=trunk)
        opt = MeZO(ParamSpace(model, include=[r"layers\.1\.", r"model\.norm"]), seed=3, eps=1e-2, rule="raw", lr=1e-2)
        grads[trunk] = []
        for _ in range(4):
            opt.step(lambda: float(lm.label_word_logits(PROMPTS, WORDS)[:, 0].mean()))
            grads[trunk].append(opt.last.projected_grad)
    assert all(g != 0.0 for g in grads[None])  # the steps move the scores, so equal lists are not vacuous
    assert grads[None] == pytest.approx(grads[1], rel=1e-4, abs=1e-6)


def test_first_tuned_layer_names_what_can_be_frozen(tiny_llama):
    model, _ = tiny_llama
    space = lambda *inc: ParamSpace(model, include=list(inc)).tensors.values()  # noqa: E731
    assert first_tuned_layer(model, space(r"layers\.1\.", r"model\.norm")) == 1
    assert first_tuned_layer(model, space(r"^model\.norm")) == 2
    assert first_tuned_layer(model, space(r"layers\.0\.mlp")) == 0
    assert first_tuned_layer(model, space(r"embed_tokens", r"layers\.1\.")) == 0  # tied head: nothing frozen


def test_a_model_without_decoder_layers_is_refused(tiny_gpt2):
    model, tok = tiny_gpt2
    with pytest.raises(ValueError, match="model.model.layers"):
        TransformersLM(model, tok, trunk_cache=1)
    with pytest.raises(ValueError, match=r"start must be in \[1, 2\]"):
        TransformersLM(*_llama(tok), trunk_cache=3)


def _llama(tok):
    from tests.conftest import make_tiny_llama

    return make_tiny_llama(tok)


def test_rows_are_cached_one_by_one_so_a_reshuffled_batch_still_hits(tiny_llama):
    model, tok = tiny_llama
    cached = TransformersLM(model, tok, batch_size=4, trunk_cache=1)
    first = cached.label_word_logits(PROMPTS, WORDS)
    shuffled = cached.label_word_logits(PROMPTS[::-1], WORDS)  # the minibatch sampler reorders rows every step
    assert torch.allclose(shuffled.flip(0), first, atol=1e-5)
    assert (cached.trunk_cache.misses, cached.trunk_cache.hits) == (1, 1)


def test_only_the_rows_not_cached_go_through_the_trunk(tiny_llama):
    model, tok = tiny_llama
    cached = TransformersLM(model, tok, batch_size=4, trunk_cache=1)
    cached.label_word_logits(PROMPTS[:3], WORDS)
    seen = []  # batch sizes that reach the first layer: the trunk's forwards
    handle = model.model.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        mixed = [PROMPTS[3], PROMPTS[0], PROMPTS[3], PROMPTS[2]]  # one new sentence, twice, among cached ones
        got = cached.label_word_logits(mixed, WORDS)
    finally:
        handle.remove()
    assert seen == [1]  # the new sentence alone (once, though it is in the batch twice), then no full check again
    assert torch.allclose(got, TransformersLM(model, tok, batch_size=4).label_word_logits(mixed, WORDS), atol=1e-5)


def test_tensors_outside_the_model_freeze_nothing(tiny_llama):
    model, tok = tiny_llama
    from blackbox_zo.weights.spaces import prefix_space

    wrapped, space = prefix_space(model, tok, num_tokens=2)
    assert first_tuned_layer(model, space.tensors.values()) == 0  # a prefix changes what every layer sees
    assert trunk_start(wrapped, space.tensors.values()) is None  # and its wrapper has no layer list to shorten
    other = _llama(tok)[0]
    assert trunk_start(other, ParamSpace(other, include=r"layers\.1\.").tensors.values()) == 1


def test_gemma_is_reproduced_because_transformers_scales_its_embeddings_inside_the_embedding_module(tokenizer):
    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = GemmaForCausalLM(config).eval()  # multiplies embeddings by sqrt(hidden): in transformers 5, in embed_tokens
    full = TransformersLM(model, tokenizer, batch_size=4).label_word_logits(PROMPTS, WORDS)
    cached = TransformersLM(model, tokenizer, batch_size=4, trunk_cache=1).label_word_logits(PROMPTS, WORDS)
    assert torch.allclose(cached, full, atol=1e-5)


def test_a_model_the_shortened_forward_does_not_reproduce_is_caught(tokenizer):
    from blackbox_zo.lm.trunk import TrunkCache

    model = _llama(tokenizer)[0]

    def rescale_given_embeddings(module, args, kwargs):  # as Gemma's body did before transformers 5
        if kwargs.get("inputs_embeds") is not None:
            kwargs["inputs_embeds"] = kwargs["inputs_embeds"] * 2.0
        return args, kwargs

    model.model.register_forward_pre_hook(rescale_given_embeddings, with_kwargs=True)
    full = TransformersLM(model, tokenizer, batch_size=4).label_word_logits(PROMPTS, WORDS)
    with pytest.raises(ValueError, match="does not reproduce its logits"):
        TransformersLM(model, tokenizer, batch_size=4, trunk_cache=1).label_word_logits(PROMPTS, WORDS)
    lenient = TransformersLM(model, tokenizer, batch_size=4, trunk_cache=TrunkCache(model, 1, strict=False))
    with pytest.warns(UserWarning, match="scoring runs the full model"):
        first = lenient.label_word_logits(PROMPTS, WORDS)
    assert lenient.trunk_cache.disabled
    assert torch.allclose(first, full, atol=1e-5)
    assert torch.allclose(lenient.label_word_logits(PROMPTS, WORDS), full, atol=1e-5)


def test_a_write_through_data_is_invisible_to_the_version_counter_so_clear_is_needed(tiny_llama):
    model, tok = tiny_llama
    cached = TransformersLM(model, tok, batch_size=4, trunk_cache=1)
    before = cached.label_word_logits(PROMPTS, WORDS)
    model.model.layers[0].mlp.up_proj.weight.data.mul_(3.0)  # trap: .data has its own version counter
    assert torch.equal(cached.label_word_logits(PROMPTS, WORDS), before)  # stale, as the module docstring warns
    cached.trunk_cache.clear()
    fresh = TransformersLM(model, tok, batch_size=4).label_word_logits(PROMPTS, WORDS)
    assert torch.allclose(cached.label_word_logits(PROMPTS, WORDS), fresh, atol=1e-5)
    assert not torch.allclose(fresh, before)
