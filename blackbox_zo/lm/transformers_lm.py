"""Batched scoring and generation with a Hugging Face causal LM, all under torch.no_grad().

These are the only model calls a zeroth-order objective needs: log-likelihoods, label-word
log-probabilities and (seeded) generation; both sides of an SPSA pair share a sampling seed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import StoppingCriteria

from blackbox_zo.lm.tokens import (
    chat_text,
    check_loglik_args,
    check_temperature,
    choice_logliks,
    context_ids,
    generation_ids,
    label_word_ids,
    reduce_logprobs,
    split_context_target,
    stop_strings,
    truncate_at_stop,
    uses_chat_template,
)
from blackbox_zo.lm.trunk import TrunkCache
from blackbox_zo.weights.population import active as active_population
from blackbox_zo.weights.population import member_major
from blackbox_zo.weights.population import suspended as suspended_population


class TransformersLM:
    """A model + tokenizer pair with batched, padding-invariant loglik / label-word / generate calls.

    Sequences are left-padded and carry explicit position ids, so a row scores the same whether it
    is alone or in a padded batch. Rows are sorted by length before batching to waste less padding.
    """

    def __init__(self, model, tokenizer, batch_size: int = 16,
                 use_chat_template: bool | None = None, max_length: int | None = None,
                 trunk_cache: int | TrunkCache | None = None, population_rows: int = 256):
        """`population_rows`: most rows in one forward when a batched population repeats a batch per member."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self.population_rows = population_rows
        self.max_length = max_length
        self.use_chat_template = uses_chat_template(tokenizer, use_chat_template)
        self.pad_id = self._pad_token_id()
        self._keeps_logits = True  # pass logits_to_keep so only the needed positions hit the LM head
        self.trunk_cache = self._trunk_cache(trunk_cache)

    def _trunk_cache(self, start: int | TrunkCache | None) -> TrunkCache | None:
        """trunk_cache=L: layers below L stay frozen, so scoring reuses their outputs (lm/trunk.py).
        A TrunkCache built by the caller is used as it is (run.py passes one that falls back to full forwards)."""
        if start is None or isinstance(start, TrunkCache):
            return start
        return TrunkCache(self._model, start)

    @property
    def model(self):
        return self._model

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return self._model.device

    # ------------------------------------------------------------------ scoring

    def loglik(self, prompts: Sequence[str], targets: Sequence[str], reduce: str = "sum") -> list[float]:
        """log p(target | prompt) per example, summed ("sum") or averaged per target token ("mean"), or each
        target token's log-prob ("tokens").

        The target tokens are those of tokenize(prompt + target) past its longest common prefix with
        tokenize(prompt): exactly the continuation, even when a merge crosses the boundary.
        An empty target scores 0.0.
        """
        check_loglik_args(prompts, targets, reduce)
        pairs = [split_context_target(self._tokenizer, p, t, self.max_length) for p, t in zip(prompts, targets)]
        scores: list = [reduce_logprobs(torch.empty(0), reduce)] * len(pairs)  # an empty target: 0.0 or []
        for indices in self._batches([len(c) + len(t) for c, t in pairs]):
            token_logprobs = self._target_logprobs([pairs[i] for i in indices])
            for i, lp in zip(indices, token_logprobs):
                scores[i] = reduce_logprobs(lp, reduce)
        return scores

    def choice_logliks(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                       reduce: str = "mean") -> list[list[float]]:
        """Score each candidate continuation of each prompt (MeZO multiple choice: mean per token)."""
        return choice_logliks(self.loglik, prompts, choices, reduce)

    def answer_logprobs(self, prompts: Sequence[str], targets: Sequence[str]) -> list[torch.Tensor]:
        """The full next-token log-distribution (float32, CPU, [T_i, vocab]) at each target token's position,
        teacher-forced: what an exact KL between two LMs reads. Memory: 4 x T x vocab bytes per row, so callers
        pass a few rows at a time.

        The tokens are those `loglik` scores (same split), so row i's tensor is read at exactly the tokens
        loglik(prompts[i], targets[i]) sums; an empty target gives a [0, vocab] tensor.
        """
        check_loglik_args(prompts, targets, "tokens")
        pairs = [split_context_target(self._tokenizer, p, t, self.max_length) for p, t in zip(prompts, targets)]
        out: list = [None] * len(pairs)
        for indices in self._batches([len(c) + len(t) for c, t in pairs]):
            batch = [pairs[i] for i in indices]
            longest = max(len(t) for _, t in batch)
            input_ids, mask, positions = self._left_pad([c + t for c, t in batch])
            with suspended_population():  # the model as its weights stand, never a population member
                logits = self._forward(input_ids, mask, positions, longest + 1)[:, :-1].float()
            logprobs = F.log_softmax(logits, dim=-1).cpu()  # [B, longest, V]: logits at j predict token j+1
            for row, (i, (_, t)) in enumerate(zip(indices, batch)):
                out[i] = logprobs[row, longest - len(t):]
        return out

    def answer_kl(self, prompts: Sequence[str], targets: Sequence[str],
                  reference_logprobs: Sequence[torch.Tensor]) -> list[list[float]]:
        """Per target token KL(pi_self || pi_ref) = sum_v p(v) (log p(v) - log q(v)), teacher-forced on the targets,
        given pi_ref's log-distributions at those tokens (as `answer_logprobs` returns them, e.g. cached once for
        fixed continuations). Inside a batched population each member reads its own weights, in one forward."""
        check_loglik_args(prompts, targets, "tokens")
        pairs = [split_context_target(self._tokenizer, p, t, self.max_length) for p, t in zip(prompts, targets)]
        out: list = [[] for _ in pairs]
        for indices in self._batches([len(c) + len(t) for c, t in pairs]):
            batch = [pairs[i] for i in indices]
            longest = max(len(t) for _, t in batch)
            if longest == 0:
                continue
            ref = torch.zeros(len(batch), longest, reference_logprobs[indices[0]].shape[-1])
            for row, i in enumerate(indices):
                if reference_logprobs[i].shape[0] != len(batch[row][1]):
                    raise ValueError(f"answer_kl: target {i} has {len(batch[row][1])} tokens but its reference "
                                     f"log-distributions cover {reference_logprobs[i].shape[0]}")
                ref[row, longest - len(batch[row][1]):] = reference_logprobs[i]  # right-aligned, as the targets are
            input_ids, mask, positions = self._left_pad([c + t for c, t in batch])

            def token_kl(logits):  # [B x members, longest]: KL_t = sum_v p_t(v) (log p_t(v) - log q_t(v))
                logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)
                q = ref.to(logprobs.device).repeat(logprobs.shape[0] // len(batch), 1, 1)  # member-major rows
                return (logprobs.exp() * (logprobs - q)).sum(-1).clamp(min=0.0).cpu()

            kl = self._scores(input_ids, mask, positions, longest + 1, token_kl, ("answer_kl",))
            for row, (i, (_, t)) in enumerate(zip(indices, batch)):
                out[i] = kl[row, longest - len(t):].tolist()
        return out

    def label_word_logits(self, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:
        """Next-token log-probabilities [n, len(words)] (float32, CPU) of each word's first token.

        Words are scored as they would follow the prompt after a space: a word that does not start
        with whitespace gets a leading space (" great", " terrible"), as in MeZO's label words.
        """
        word_ids = self.label_word_ids(words)
        rows = []
        # context + the word fit in max_length, as context + target do in loglik (and in VLLMBackend)
        encoded = [context_ids(self._tokenizer, p, self.max_length, reserve=1) for p in prompts]
        for indices in self._batches([len(e) for e in encoded]):
            input_ids, mask, positions = self._left_pad([encoded[i] for i in indices])

            def next_word(logits):  # log p(word | prompt) of each word's first token
                return F.log_softmax(logits[:, -1].float(), dim=-1)[:, word_ids].cpu()

            logprobs = self._scores(input_ids, mask, positions, 1, next_word, ("words", tuple(word_ids)))
            rows.extend(zip(indices, logprobs))
        out = torch.empty(len(prompts), len(word_ids), dtype=torch.float32)
        for i, row in rows:
            out[i] = row
        return out

    def label_word_ids(self, words: Sequence[str]) -> list[int]:
        """First token id of each label word (with a leading space); distinct words must differ."""
        return label_word_ids(self._tokenizer, words)

    # --------------------------------------------------------------- generation

    def prompt_text(self, prompt: str) -> str:
        """The text `generate` continues for `prompt` (through the chat template when enabled): score a
        completion with loglik(prompt_text(p), completion) to get the probability generate gave it."""
        return chat_text(self._tokenizer, prompt) if self.use_chat_template else prompt

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Completions only (special tokens dropped), truncated before the first stop string.

        temperature == 0 decodes greedily. Otherwise sampling draws from a private RNG seeded with
        `seed` (global RNG untouched), so equal prompts, seed, batch_size and weights give equal
        samples; with seed=None sampling uses (and advances) the global RNG.
        """
        check_temperature(temperature)
        stop = stop_strings(stop)
        encoded = [generation_ids(self._tokenizer, p, self.use_chat_template, self.max_length, max_new_tokens)
                   for p in prompts]
        options = self._generation_options(max_new_tokens, temperature, top_p)
        members = active_population()
        if members is not None:  # every member's completions from one batched generate per batch
            key = ("generate", tuple(map(tuple, encoded)), repr(sorted(options.items())), seed if temperature > 0 else None,
                   tuple(stop))
            if key not in members.cache:
                members.cache[key] = self._generate_members(members, encoded, options, stop, seed if temperature > 0 else None)
            return list(members.cache[key][members.selected])
        completions = [""] * len(prompts)
        with self._sampling_rng(seed if temperature > 0 else None):
            for indices in self._batches([len(e) for e in encoded]):
                texts = self._generate_batch([encoded[i] for i in indices], options, stop)
                for i, text in zip(indices, texts):
                    completions[i] = truncate_at_stop(text, stop)
        return completions

    def _generate_members(self, members, encoded: list[list[int]], options: dict, stop: list[str], seed: int | None):
        """Completions of every member (one list each), each batch repeated per member in one generate call; all
        members share the sampling seed."""
        per_member = [[""] * len(encoded) for _ in range(members.n)]
        with self._sampling_rng(seed):
            for indices in self._batches([len(e) for e in encoded]):
                rows = [encoded[i] for i in indices]
                texts = self._each_member(  # run gets the row indices repeated once per member
                    members, lambda idx: self._generate_batch([rows[i] for i in idx.tolist()], options, stop),
                    torch.arange(len(rows)))
                for m, member_texts in enumerate(texts):
                    for i, text in zip(indices, member_texts):
                        per_member[m][i] = truncate_at_stop(text, stop)
        return per_member

    def _generate_batch(self, encoded: list[list[int]], options: dict, stop: list[str]) -> list[str]:
        input_ids, mask, _ = self._left_pad(encoded)
        criteria = [StopOnStrings(self._tokenizer, stop, input_ids.shape[1])] if stop else None
        with torch.no_grad():
            out = self._model.generate(input_ids=input_ids, attention_mask=mask,
                                       stopping_criteria=criteria, **options)
        new_tokens = out[:, input_ids.shape[1]:]
        return self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _generation_options(self, max_new_tokens: int, temperature: float, top_p: float) -> dict:
        options = dict(max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                       eos_token_id=self._eos_ids())
        if temperature == 0:
            return dict(options, do_sample=False, temperature=None, top_p=None, top_k=None)
        # top_k=0 switches off transformers' default top-k of 50: only temperature and top_p apply.
        return dict(options, do_sample=True, temperature=temperature, top_p=top_p, top_k=0)

    @contextmanager
    def _sampling_rng(self, seed: int | None) -> Iterator[None]:
        """Seed a forked RNG for the duration of the block; the caller's RNG state is restored after."""
        if seed is None:
            yield
            return
        device = self.device
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type=device.type if cuda else "cuda"):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            yield

    # ---------------------------------------------------------------- internals

    def _target_logprobs(self, batch: list[tuple[list[int], list[int]]]) -> list[torch.Tensor]:
        """Log-probabilities of each row's target tokens (which sit at the right end of the row)."""
        input_ids, mask, positions = self._left_pad([c + t for c, t in batch])
        longest = max(len(t) for _, t in batch)
        if longest == 0:
            return [torch.empty(0) for _ in batch]
        # Logits at position j predict token j+1: the last `longest` targets need positions
        # [T-longest-1, T-1), i.e. the last longest+1 logits without the final one.

        def target_logprobs(logits, ids):
            logits = logits[:, -longest - 1:-1].float()
            tokens = ids[:, -longest:]
            # log p(token) = logit[token] - logsumexp(logits): no full log-softmax tensor is kept.
            return (logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)).cpu()  # [B, longest]

        # every member's copy of a row holds the same tokens, so the tokens of the b rows serve each copy
        picked = self._scores(input_ids, mask, positions, longest + 1,
                              lambda logits: target_logprobs(logits, input_ids.repeat(logits.shape[0] // len(batch), 1)),
                              ("targets",))
        return [picked[row, longest - len(t):] for row, (_, t) in enumerate(batch)]

    def _scores(self, input_ids, mask, positions, keep: int, finish, tag) -> torch.Tensor:
        """finish(logits of the last `keep` positions): per-row scores. Inside a batched population, the first call
        scores every member's copy of the rows in as few forwards as population_rows allows; the selected member's
        rows come back, and the other members' wait in the population's cache for their own evaluation."""
        members = active_population()
        if members is None:
            return finish(self._forward(input_ids, mask, positions, keep))
        key = (tag, keep, tuple(input_ids.shape), input_ids.cpu().numpy().tobytes(), mask.cpu().numpy().tobytes())
        if key not in members.cache:
            members.cache[key] = self._each_member(
                members, lambda ids, m, p: finish(self._forward(ids, m, p, keep)), input_ids, mask, positions)
        return members.cache[key][members.selected]

    def _each_member(self, members, run, *rows: torch.Tensor) -> list:
        """run(*rows repeated once per member) in chunks of members, rows tagged with their member: one result each.
"""
        b = rows[0].shape[0]
        per_call = max(1, self.population_rows // b)
        out = []
        for first in range(0, members.n, per_call):
            k = min(per_call, members.n - first)
            repeated = [r.repeat(k, *([1] * (r.ndim - 1))) for r in rows]  # member-major: all of member 0's rows first
            with members.tagged(member_major(k, b, rows[0].device) + first, block=(first, k)):
                result = run(*repeated)
            out.extend(result.split(b) if torch.is_tensor(result) else [result[j * b:(j + 1) * b] for j in range(k)])
        return out

    def _forward(self, input_ids, mask, positions, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions (only those go through the LM head)."""
        inputs = dict(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False)
        with torch.no_grad():
            if self.trunk_cache is not None:
                return self.trunk_cache.logits(inputs, keep)
            if self._keeps_logits:
                try:
                    return self._model(**inputs, logits_to_keep=keep).logits[:, -keep:]
                except TypeError:  # a model class without logits_to_keep: compute all logits
                    self._keeps_logits = False
            return self._model(**inputs).logits[:, -keep:]

    def _left_pad(self, rows: list[list[int]]):
        """Left-padded ids, attention mask and position ids (0 at each row's first real token)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.device
        return ids.to(device), mask.to(device), positions.to(device)

    def _batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Indices in batches of batch_size, longest first, so rows of a batch have similar length."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def _pad_token_id(self) -> int:
        tok = self._tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def _eos_ids(self) -> list[int] | None:
        """Stop tokens: the model's generation config eos ids plus the tokenizer's eos."""
        configured = getattr(getattr(self._model, "generation_config", None), "eos_token_id", None)
        ids = [configured] if isinstance(configured, int) else list(configured or [])
        if self._tokenizer.eos_token_id is not None and self._tokenizer.eos_token_id not in ids:
            ids.append(self._tokenizer.eos_token_id)
        return ids or None


class StopOnStrings(StoppingCriteria):
    """Stopping criterion: a row is done once its decoded completion contains a stop string."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_length: int):
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        done = [any(s in text for s in self.stop) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
