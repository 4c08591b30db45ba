"""Tokenisation helpers every LM backend shares: context/target split, length trimming, choices, stop strings.

TransformersLM and VLLMBackend call these same functions, so both tokenise a prompt, trim it to the model's
length and cut a completion at a stop string identically; only the forward pass differs between them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

REDUCTIONS = ("sum", "mean", "tokens")  # "tokens": each target token's log-prob (the KL brake's k3)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` with the tokenizer's own special tokens (as `tokenizer(text)` adds them)."""
    return list(tokenizer(text)["input_ids"])


def start_token_id(tokenizer) -> int:
    """The token an empty prompt starts from (bos, else eos, else pad): a row may never be empty."""
    for candidate in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError("tokenizer has no bos, eos or pad token to start an empty prompt from")


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading positions where the two id lists agree."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def check_loglik_args(prompts: Sequence[str], targets: Sequence[str], reduce: str) -> None:
    """Name what is wrong before any model call: unequal lengths or an unknown reduction."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def fit_length(context: list[int], target: list[int], max_length: int | None) -> tuple[list[int], list[int]]:
    """Drop context tokens from the left so that context + target fits in max_length (None: no limit)."""
    if max_length is None or len(context) + len(target) <= max_length:
        return context, target
    if len(target) >= max_length:
        raise ValueError(f"target of {len(target)} tokens does not fit max_length={max_length}")
    return context[len(context) + len(target) - max_length:], target


def split_context_target(tokenizer, prompt: str, target: str,
                         max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(context ids, target ids): context + target == tokenize(prompt + target), left-trimmed to max_length.

    The target is tokenize(prompt + target) past its longest common prefix with tokenize(prompt): exactly
    the continuation, even when a merge crosses the boundary. An empty context becomes the start token,
    since the first target token must be predicted from something.
    """
    prompt_ids, full_ids = encode(tokenizer, prompt), encode(tokenizer, prompt + target)
    n = common_prefix_length(prompt_ids, full_ids)
    context, continuation = full_ids[:n], full_ids[n:]
    return fit_length(context or [start_token_id(tokenizer)], continuation, max_length)


def reduce_logprobs(logprobs: torch.Tensor, reduce: str) -> float | list[float]:
    """log p(target) = sum of its token log-probs ("sum"), or that sum / tokens ("mean"); no tokens: 0.0.
    "tokens" returns the log-probs themselves, one per target token (no tokens: [])."""
    if reduce == "tokens":
        return [float(v) for v in logprobs]
    if logprobs.numel() == 0:
        return 0.0
    return float(logprobs.sum() if reduce == "sum" else logprobs.mean())


def choice_logliks(loglik: Callable[..., list[float]], prompts: Sequence[str],
                   choices: Sequence[Sequence[str]], reduce: str = "mean") -> list[list[float]]:
    """Score every candidate continuation of every prompt with one flat `loglik` call, regrouped per prompt."""
    if len(prompts) != len(choices):
        raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
    flat = loglik([p for p, cs in zip(prompts, choices) for _ in cs], [c for cs in choices for c in cs],
                  reduce=reduce)
    out, start = [], 0
    for cs in choices:
        out.append(flat[start:start + len(cs)])
        start += len(cs)
    return out


def context_ids(tokenizer, prompt: str, max_length: int | None = None, reserve: int = 0) -> list[int]:
    """Prompt ids (the start token if it encodes to nothing), left-trimmed so `reserve` more tokens fit."""
    ids = encode(tokenizer, prompt) or [start_token_id(tokenizer)]
    if max_length is not None:
        ids = ids[-max(max_length - reserve, 1):]
    return ids


def uses_chat_template(tokenizer, use_chat_template: bool | None) -> bool:
    """Whether prompts go through the chat template: None means "when the tokenizer has one"."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template and not has_template:
        raise ValueError("use_chat_template=True but the tokenizer has no chat template")
    return has_template if use_chat_template is None else bool(use_chat_template)


def chat_text(tokenizer, prompt: str) -> str:
    """The text a chat model continues for one user turn: the template with the assistant's turn opened."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)


def generation_ids(tokenizer, prompt: str, use_chat_template: bool, max_length: int | None,
                   max_new_tokens: int) -> list[int]:
    """Prompt ids for generation (through the chat template when enabled), trimmed to leave max_new_tokens."""
    if use_chat_template:
        text = chat_text(tokenizer, prompt)
        # The template already writes the special tokens it wants.
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) or [start_token_id(tokenizer)]
    else:
        ids = context_ids(tokenizer, prompt)
    if max_length is not None:
        ids = ids[-max(max_length - max_new_tokens, 1):]
    return ids


def label_word_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """First token id of each label word, read after a space (" great"); distinct words must differ."""
    ids = []
    for word in words:
        spaced = word if word[:1].isspace() else " " + word
        tokens = tokenizer.encode(spaced, add_special_tokens=False)
        if not tokens:
            raise ValueError(f"label word {word!r} tokenizes to nothing")
        ids.append(tokens[0])
    for a in range(len(words)):
        for b in range(a + 1, len(words)):
            if ids[a] == ids[b]:
                raise ValueError(
                    f"label words {words[a]!r} and {words[b]!r} share their first token "
                    f"({tokenizer.convert_ids_to_tokens(ids[a])!r}, id {ids[a]}); "
                    "choose words whose first tokens differ")
    return ids


def check_temperature(temperature: float) -> None:
    """Sampling temperature must be >= 0 (0 decodes greedily)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")


def stop_strings(stop: Sequence[str] | None) -> list[str]:
    """The non-empty stop strings (an empty string would cut every completion to nothing)."""
    return [s for s in (stop or []) if s]


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut text before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]
