"""Drift from the untuned model, per token: exact KL(pi_theta || pi_0) over the vocabulary at the held answers' tokens.

Why: reward is only half a result; the field plots it against KL to the base model over checkpoints. For a small
model the full distributions are cheap, so the drift is read exactly (teacher-forced), with no estimator noise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .base import ObjectiveError, check_values

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM

ROWS = 8  # answers read per pair of forwards: 2 x 4 x tokens x vocab bytes (8 x 24 x 49152 x 8: 75 MB)


def token_kl(lm: LM, reference: LM, prompts: Sequence[str], answers: Sequence[str],
             name: str = "drift") -> tuple[float, str]:
    """Mean per-token KL of the answers from pi_0 (nats/token, token-weighted over the set) and how it was read.

    "exact": KL_t = sum_v pi_theta(v | x, y_<t) (log pi_theta(v | .) - log pi_0(v | .)) at every answer token,
    from both LMs' full log-distributions (`answer_logprobs`, teacher-forced on the answers as generated).
    "k3": where an LM returns no full distribution (vLLM), TRL's per-token estimator exp(r_t) - r_t - 1 with
    r_t = log pi_0(y_t) - log pi_theta(y_t) on the answer tokens: unbiased only for sampled answers.
    """
    full = callable(getattr(lm, "answer_logprobs", None)) and callable(getattr(reference, "answer_logprobs", None))
    total, tokens = 0.0, 0
    for first in range(0, len(answers), ROWS):
        read = _exact if full else _k3
        kls = read(lm, reference, list(prompts[first:first + ROWS]), list(answers[first:first + ROWS]), name)
        total += math.fsum(kls)
        tokens += len(kls)
    return (total / tokens if tokens else 0.0), ("exact" if full else "k3")


def _exact(lm: LM, reference: LM, prompts: list[str], answers: list[str], name: str) -> list[float]:
    """Per answer token: sum_v p(v) (log p(v) - log p0(v)), both read teacher-forced on the same tokens."""
    tuned = lm.answer_logprobs([lm.prompt_text(p) for p in prompts], answers)
    untuned = reference.answer_logprobs([reference.prompt_text(p) for p in prompts], answers)
    out: list[float] = []
    for i, (lp, lp0) in enumerate(zip(tuned, untuned)):
        if lp.shape != lp0.shape:
            raise ObjectiveError(f"{name}: answer {i} reads {tuple(lp.shape)} under the tuned model but "
                                 f"{tuple(lp0.shape)} under pi_0: they must share a tokenizer")
        kl = (lp.exp() * (lp - lp0)).sum(-1)  # KL_t = sum_v p_theta(v) (log p_theta(v) - log p_0(v)) >= 0
        out.extend(check_values(name, kl.clamp(min=0.0).tolist(), lp.shape[0], what=f"KL per token of answer {i}"))
    return out


def _k3(lm: LM, reference: LM, prompts: list[str], answers: list[str], name: str) -> list[float]:
    """Per answer token: exp(r) - r - 1, r = log pi_0(y_t) - log pi_theta(y_t) (TRL's per-token KL)."""
    tuned = lm.loglik([lm.prompt_text(p) for p in prompts], answers, reduce="tokens")
    untuned = reference.loglik([reference.prompt_text(p) for p in prompts], answers, reduce="tokens")
    out: list[float] = []
    for i, (lp, lp0) in enumerate(zip(tuned, untuned)):
        if len(lp) != len(lp0):
            raise ObjectiveError(f"{name}: answer {i} has {len(lp)} tokens under the tuned model but {len(lp0)} "
                                 "under pi_0: they must share a tokenizer")
        out.extend(math.expm1(min(b - a, 30.0)) - (b - a) for a, b in zip(lp, lp0))  # exp(r) - 1 - r
    return out
