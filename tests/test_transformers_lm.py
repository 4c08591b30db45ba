"""Tests of TransformersLM on tiny random models: scores match hand computations and ignore padding.

Also checks that seeded sampling is reproducible, greedy decoding is argmax decoding, and stop strings cut.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blackbox_zo.lm import TransformersLM
from blackbox_zo.lm.tokens import truncate_at_stop

PROMPTS = ["The quick brown fox", "What is the capital of France?",
           "one", "This movie was great. That film was terrible. Overall it", "Paris"]
TARGETS = [" jumps over the lazy dog.", " Paris.", " two three four", " was fine", " is nice"]


def full_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(. | ids[:j+1]) for every position j, from a single unpadded forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return F.log_softmax(logits.float(), dim=-1)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_loglik_padding_invariant(fixture, reduce, request):
    model, tok = request.getfixturevalue(fixture)
    batched = TransformersLM(model, tok, batch_size=16).loglik(PROMPTS, TARGETS, reduce=reduce)
    alone = TransformersLM(model, tok, batch_size=1).loglik(PROMPTS, TARGETS, reduce=reduce)
    assert len(batched) == len(PROMPTS)
    assert batched == pytest.approx(alone, abs=1e-4)
    assert len(set(round(x, 3) for x in batched)) > 1  # the rows really differ


def test_loglik_matches_hand_computation(tiny_llama):
    model, tok = tiny_llama
    prompt, target = "What is the capital of France?", " Paris is the capital."
    prompt_ids = tok(prompt)["input_ids"]
    full_ids = tok(prompt + target)["input_ids"]
    assert full_ids[:len(prompt_ids)] == prompt_ids  # a clean boundary for this example
    logprobs = full_logprobs(model, full_ids)
    n = len(prompt_ids)
    expected = sum(logprobs[j - 1, full_ids[j]].item() for j in range(n, len(full_ids)))
    lm = TransformersLM(model, tok)
    # Batch it with other rows so padding is in play too.
    got = lm.loglik([prompt, "one", "The quick brown fox"], [target, " two", " jumps"])[0]
    assert got == pytest.approx(expected, abs=1e-4)
    mean = lm.loglik([prompt], [target], reduce="mean")[0]
    assert mean == pytest.approx(expected / (len(full_ids) - n), abs=1e-4)
    tokens = lm.loglik([prompt, "one"], [target, ""], reduce="tokens")  # each target token's log-prob (KL's k3)
    assert tokens[0] == pytest.approx([logprobs[j - 1, full_ids[j]].item() for j in range(n, len(full_ids))], abs=1e-4)
    assert tokens[1] == []


def test_loglik_edge_cases(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    assert lm.loglik(["Hello", ""], ["", ""]) == [0.0, 0.0]
    # an empty prompt is scored from the start token: the next-token log-probs after [bos]
    words = lm.label_word_logits(["", "Hello"], ["great", "terrible"])
    word_ids = lm.label_word_ids(["great", "terrible"])
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    assert torch.allclose(words[0], full_logprobs(model, [start])[-1, word_ids], atol=1e-5)
    empty_prompt = lm.loglik([""], [" Paris"])[0]
    assert empty_prompt < 0
    with pytest.raises(ValueError, match="reduce"):
        lm.loglik(["a"], ["b"], reduce="max")
    with pytest.raises(ValueError, match="targets"):
        lm.loglik(["a", "b"], ["c"])


def test_loglik_max_length_drops_left_context(tiny_llama):
    model, tok = tiny_llama
    prompt, target = "This movie was great. That film was terrible. Overall it", " was fine"
    n_target = len(tok(prompt + target)["input_ids"]) - len(tok(prompt)["input_ids"])
    short = TransformersLM(model, tok, max_length=n_target + 2).loglik([prompt], [target])[0]
    kept = tok(prompt)["input_ids"][-2:]
    ids = kept + tok(prompt + target)["input_ids"][-n_target:]
    logprobs = full_logprobs(model, ids)
    expected = sum(logprobs[j - 1, ids[j]].item() for j in range(2, len(ids)))
    assert short == pytest.approx(expected, abs=1e-4)


def test_choice_logliks_ranks_favoured_choice_first(tiny_llama):
    model, tok = tiny_llama
    favoured = " Paris"
    # Constructed case: an LM-head bias that strongly boosts every token of the favoured answer.
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tok(favoured, add_special_tokens=False)["input_ids"]] = 30.0
    model.lm_head = head
    lm = TransformersLM(model, tok, batch_size=2)
    choices = [[" London", " Paris", " Rome"], [" Paris", " Berlin"]]
    scores = lm.choice_logliks(["The capital of France is", "Answer:"], choices)
    assert [len(s) for s in scores] == [3, 2]
    assert max(range(3), key=lambda i: scores[0][i]) == 1
    assert max(range(2), key=lambda i: scores[1][i]) == 0
    flat = lm.loglik(["Answer:", "Answer:"], [" Paris", " Berlin"], reduce="mean")
    assert scores[1] == pytest.approx(flat, abs=1e-5)


def test_label_word_logits_are_next_token_logprobs(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok, batch_size=2)
    prompts = ["This movie was great. It was", "one", "That film was terrible. It was"]
    out = lm.label_word_logits(prompts, ["great", " terrible"])
    assert out.shape == (3, 2) and out.dtype == torch.float32
    word_ids = [tok(" great", add_special_tokens=False)["input_ids"][0],
                tok(" terrible", add_special_tokens=False)["input_ids"][0]]
    for i, prompt in enumerate(prompts):
        expected = full_logprobs(model, tok(prompt)["input_ids"])[-1, word_ids]
        assert torch.allclose(out[i], expected, atol=1e-4)
    assert (out < 0).all()


def test_label_words_sharing_first_token_rejected(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(ValueError, match="share their first token"):
        TransformersLM(model, tok).label_word_logits(["It was"], ["great", " great"])


def test_sampled_generate_reproducible_and_seed_dependent(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok, batch_size=2)
    prompts = ["The quick brown fox", "one", "What is the capital of France?"]
    hot = dict(max_new_tokens=8, temperature=10.0, top_p=0.95)  # hot: the fixture's logits are sharp
    rng_before = torch.get_rng_state()
    a = lm.generate(prompts, seed=123, **hot)
    b = lm.generate(prompts, seed=123, **hot)
    c = lm.generate(prompts, seed=124, **hot)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    assert a == b
    assert a != c
    assert len(a) == 3


def manual_greedy(model, ids: list[int], steps: int, eos_id: int) -> list[int]:
    """Greedy decoding by repeated full forward passes and argmax, stopping at eos."""
    out = []
    for _ in range(steps):
        with torch.no_grad():
            next_id = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        if next_id == eos_id:
            break
        out.append(next_id)
    return out


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_greedy_generate_is_argmax_decoding(fixture, request):
    model, tok = request.getfixturevalue(fixture)
    lm = TransformersLM(model, tok, use_chat_template=False)
    prompt = "The quick brown fox"
    expected_ids = manual_greedy(model, tok(prompt)["input_ids"], 6, tok.eos_token_id)
    expected = tok.decode(expected_ids, skip_special_tokens=True)
    got = lm.generate([prompt, "What is the capital of France? Paris."], max_new_tokens=6)
    assert got[0] == expected
    assert got == lm.generate([prompt, "What is the capital of France? Paris."], max_new_tokens=6)


def test_chat_template_applied_in_auto_mode(tiny_llama):
    model, tok = tiny_llama
    auto = TransformersLM(model, tok)
    assert auto.use_chat_template
    plain = TransformersLM(model, tok, use_chat_template=False)
    prompt = "What is the capital of France?"
    templated = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, tokenize=False)
    assert auto.generate([prompt], max_new_tokens=5) == plain.generate([templated], max_new_tokens=5)


def test_chat_template_required_when_asked(tiny_llama):
    import copy

    model, tok = tiny_llama
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    assert not TransformersLM(model, bare).use_chat_template
    with pytest.raises(ValueError, match="chat template"):
        TransformersLM(model, bare, use_chat_template=True)


def test_stop_strings_truncate(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok, use_chat_template=False)
    prompt = ["The quick brown fox"]
    full = lm.generate(prompt, max_new_tokens=12)[0]
    assert len(full) >= 4, f"random model produced too little text to test stops: {full!r}"
    stop = full[2:4]
    cut = lm.generate(prompt, max_new_tokens=12, stop=[stop, "\u2603never"])[0]
    assert cut == full[:full.find(stop)]
    assert len(cut) < len(full)


def test_truncate_at_stop_uses_earliest():
    assert truncate_at_stop("abc\n\nQ: next", ["Q:", "\n\n"]) == "abc"
    assert truncate_at_stop("abc", ["x"]) == "abc"
    assert truncate_at_stop("abc", []) == "abc"


def test_generate_rejects_negative_temperature(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(ValueError, match="temperature"):
        TransformersLM(model, tok).generate(["hi"], temperature=-1.0)


def test_properties(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    assert lm.model is model and lm.tokenizer is tok
    assert lm.device == torch.device("cpu")
