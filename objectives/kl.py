"""The KL brake: an objective over generated text pays beta x KL-hat for each answer's drift from the untuned model.

Why: a reward climbed without a brake is climbed by text that breaks ("I.\\n\\nI.", "&&&&"); charging each answer
its log-likelihood ratio against the model the run started from keeps the climb near text that model would write.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .base import ObjectiveError, Score, check_values

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


def check_beta(beta: float) -> float:
    """kl= must be a finite number >= 0 (0: no brake)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"kl (the KL brake's beta) must be a finite number >= 0, got {beta!r}")
    return float(beta)


def kl_hat(lm: LM, reference: LM, prompts: Sequence[str], answers: Sequence[str], name: str = "kl") -> list[float]:
    """Per answer: KL-hat = sum_t log pi_theta(y_t | x, y_<t) - log pi_0(y_t | x, y_<t) over its generated tokens.

    This is the k1 estimator (Schulman 2020): for y drawn from pi_theta its mean is exactly KL(pi_theta || pi_0)
    of the whole answer, and it needs only each model's summed loglik, which every LM of the protocol gives
    (in process, vLLM, `UntunedLM`, and inside a batched population, where `lm.loglik` scores every member's
    answers in one batched forward at that member's point). TRL's k3 (exp(r) - r - 1 per token) is never negative
    but needs per-token log-probs; k1 can be negative for one answer (an answer pi_0 likes more than pi_theta
    does), which the mean over a batch averages. At the start (pi_theta == pi_0) every KL-hat is exactly 0.
    An empty answer has no tokens and scores 0. Under greedy decoding (the recipe for rewards) y is not a sample,
    so KL-hat is the log-ratio of the one answer the model gives, not an estimate of the KL: still 0 at the start,
    and it grows as the tuned model prefers its answer more than pi_0 does.
    """
    n = len(answers)
    tuned = check_values(name, lm.loglik([lm.prompt_text(p) for p in prompts], list(answers), reduce="sum"), n,
                         what="tuned logliks")
    untuned = check_values(name, reference.loglik([reference.prompt_text(p) for p in prompts], list(answers),
                                                  reduce="sum"), n, what="reference logliks")
    return [t - u for t, u in zip(tuned, untuned)]  # log pi_theta(y) - log pi_0(y), summed over y's tokens


class KLBrake:
    """What an objective over generated text holds for its brake: beta (`kl=`) and pi_0 (`reference=`).

    pi_0 is an LM over the weights the run started from: `blackbox_zo.lm.UntunedLM(lm, space)` for steering
    vectors, prefixes and LoRA (the same weights with the space switched off, no copy), or a second copy of the
    model for a space over the weights. A config run sets both from `objective: {kl: beta}`.
    """

    kl: float = 0.0
    reference: LM | None = None

    def use_reference(self, reference: LM | None, kl: float | None = None) -> None:
        """Set pi_0 (also the reference of the text report's NLL) and, when given, beta."""
        self.reference = reference
        if kl is not None:
            self.kl = check_beta(kl)

    def drift(self, lm: LM, prompts: Sequence[str], answers: Sequence[str]) -> list[float] | None:
        """KL-hat of each answer when the brake is on (kl > 0), else None (no extra forward)."""
        if not self.kl:
            return None
        if self.reference is None:
            raise ObjectiveError(f"{getattr(self, 'name', 'objective')}: kl={self.kl} needs reference= (pi_0, e.g. "
                                 "blackbox_zo.lm.UntunedLM(lm, space)); a config run sets it from objective.kl")
        return kl_hat(lm, self.reference, prompts, answers, getattr(self, "name", "kl"))

    def braked(self, score: Score, drift: list[float] | None) -> Score:
        """value_i = reward_i - beta * KL-hat_i (None stays None); info keeps the reward and the mean KL-hat."""
        if drift is None:
            return score
        per = [None if r is None else r - self.kl * d for r, d in zip(score.per_example, drift)]
        present = [v for v in per if v is not None]
        mean_drift = math.fsum(drift) / len(drift)
        # the mean of r_i - beta KL_i over the answers that apply; a batch-level metric (no per-answer values)
        # pays beta times the mean KL-hat
        value = math.fsum(present) / len(present) if present else score.value - self.kl * mean_drift
        return Score(per, value, score.name, {**score.info, "reward": score.value, "kl": mean_drift})


def braked_verdict(verdict: int, drift_a: float, drift_b: float, beta: float) -> int:
    """A pairwise verdict in {-1, 0, 1} with the brake as a margin on the KL difference: v' = round(v - beta x
    (KL_a - KL_b)), clipped to [-1, 1]. A win survives while the winner drifted less than 0.5/beta nats further
    than the loser, turns into a tie up to 1.5/beta, and is lost beyond; a tie goes to the answer that drifted
    0.5/beta nats less. beta = 0 leaves every verdict as the judge gave it."""
    return max(-1, min(1, math.floor(verdict - beta * (drift_a - drift_b) + 0.5)))
