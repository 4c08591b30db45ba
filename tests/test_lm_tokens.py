"""The tokenisation helpers both LM classes share: trimming at max length, context/target split, stops, choices.

Cases sit on the boundaries where an off-by-one would show: exactly max_length tokens, one more, a target
that cannot fit, overlapping and empty stop strings.
"""

from __future__ import annotations

import pytest
import torch

from blackbox_zo.lm import TransformersLM
from blackbox_zo.lm.tokens import (
    choice_logliks,
    context_ids,
    encode,
    fit_length,
    generation_ids,
    reduce_logprobs,
    split_context_target,
    start_token_id,
    stop_strings,
    truncate_at_stop,
)

PROMPT, TARGET = "This movie was great. That film was terrible. Overall it", " was fine"


def test_fit_length_keeps_rows_that_fit_and_drops_left_context_otherwise():
    context, target = [1, 2, 3, 4], [5, 6]
    assert fit_length(context, target, None) == (context, target)
    assert fit_length(context, target, 6) == (context, target)  # exactly max_length: untouched
    assert fit_length(context, target, 5) == ([2, 3, 4], target)  # one over: the oldest token goes
    assert fit_length(context, target, 3) == ([4], target)
    with pytest.raises(ValueError, match="target of 2 tokens does not fit max_length=2"):
        fit_length(context, target, 2)  # no room left for any context


def test_split_context_target_is_the_tokenisation_of_the_whole_text(tokenizer):
    full = encode(tokenizer, PROMPT + TARGET)
    context, target = split_context_target(tokenizer, PROMPT, TARGET)
    assert context + target == full and len(target) >= 2
    trimmed_context, trimmed_target = split_context_target(tokenizer, PROMPT, TARGET, max_length=len(target) + 2)
    assert trimmed_target == target and trimmed_context == context[-2:]
    assert split_context_target(tokenizer, PROMPT, "") == (full[:len(encode(tokenizer, PROMPT))], [])


def test_empty_prompt_is_scored_from_the_start_token(tokenizer):
    context, target = split_context_target(tokenizer, "", " Paris")
    assert context == [start_token_id(tokenizer)] and target == encode(tokenizer, " Paris")
    assert context_ids(tokenizer, "") == [start_token_id(tokenizer)]


def test_context_ids_leave_room_for_what_follows(tokenizer):
    ids = encode(tokenizer, PROMPT)
    assert context_ids(tokenizer, PROMPT) == ids
    assert context_ids(tokenizer, PROMPT, max_length=5) == ids[-5:]
    assert context_ids(tokenizer, PROMPT, max_length=5, reserve=1) == ids[-4:]  # vLLM appends the label word
    assert context_ids(tokenizer, PROMPT, max_length=5, reserve=9) == ids[-1:]  # never empty


def test_generation_ids_trim_to_leave_max_new_tokens(tokenizer):
    ids = encode(tokenizer, PROMPT)
    assert generation_ids(tokenizer, PROMPT, False, None, 32) == ids
    assert generation_ids(tokenizer, PROMPT, False, len(ids) + 3, 3) == ids  # prompt + new tokens fit exactly
    assert generation_ids(tokenizer, PROMPT, False, len(ids) + 3, 4) == ids[1:]
    templated = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                              tokenize=False)
    chat = generation_ids(tokenizer, PROMPT, True, 10, 4)
    assert chat == tokenizer(templated, add_special_tokens=False)["input_ids"][-6:]


def test_truncate_at_stop_cuts_at_the_earliest_stop_of_any():
    assert truncate_at_stop("abc\n\nQ: next", ["Q:", "\n\n"]) == "abc"  # the later-listed stop comes first
    assert truncate_at_stop("one. two. three.", ["."]) == "one"
    assert truncate_at_stop("abcabc", ["ca", "bc"]) == "a"  # overlapping stops: earliest start wins
    assert truncate_at_stop("abc", ["x"]) == "abc"
    assert truncate_at_stop("abc", []) == "abc"


def test_empty_stop_strings_are_dropped_not_applied():
    assert stop_strings(None) == [] and stop_strings(["", "\n", ""]) == ["\n"]
    assert truncate_at_stop("abc", stop_strings([""])) == "abc"  # "" would otherwise cut everything
    assert truncate_at_stop("abc", [""]) == ""


def test_reduce_logprobs_sum_mean_and_empty():
    lp = torch.tensor([-1.0, -2.0, -4.5])
    assert reduce_logprobs(lp, "sum") == -7.5 and reduce_logprobs(lp, "mean") == -2.5
    assert reduce_logprobs(torch.empty(0), "mean") == 0.0


def test_choice_logliks_regroups_one_flat_call():
    calls = []

    def loglik(prompts, targets, reduce):
        calls.append((list(prompts), list(targets), reduce))
        return [-float(len(p) + len(t)) for p, t in zip(prompts, targets)]

    out = choice_logliks(loglik, ["a", "bb"], [["x", "yy", ""], ["z"]], reduce="mean")
    assert out == [[-2.0, -3.0, -1.0], [-3.0]]
    assert calls == [(["a", "a", "a", "bb"], ["x", "yy", "", "z"], "mean")]  # one batched call
    with pytest.raises(ValueError, match="2 prompts but 1 choice lists"):
        choice_logliks(loglik, ["a", "b"], [["x"]])


def test_transformers_lm_trims_label_word_and_generation_prompts(tiny_llama):
    """max_length now bounds every call, not only loglik: the kept tail scores as if it were the prompt."""
    model, tok = tiny_llama
    ids = encode(tok, PROMPT)
    short = TransformersLM(model, tok, max_length=4, use_chat_template=False)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[-3:]])).logits[0, -1].float()  # 3 + the word = 4
    word_ids = [tok(" great", add_special_tokens=False)["input_ids"][0]]
    expected = torch.log_softmax(logits, -1)[word_ids]
    assert torch.allclose(short.label_word_logits([PROMPT], ["great"])[0], expected, atol=1e-5)
    # generation keeps max_length - max_new_tokens = 2 prompt tokens
    tail = tok.decode(ids[-2:])
    assert encode(tok, tail) == ids[-2:], "the kept tail must re-tokenise to itself for this comparison"
    full = TransformersLM(model, tok, use_chat_template=False)
    assert short.generate([PROMPT], max_new_tokens=2) == full.generate([tail], max_new_tokens=2)
