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


ESTIMATORS = ("k3", "k1")
KL_ON = ("answers", "untuned")  # what the brake reads its KL on (KLBrake.kl_on)


def kl_hat(lm: LM, reference: LM, prompts: Sequence[str], answers: Sequence[str], name: str = "kl",
           estimator: str = "k3") -> list[float]:
    """Per answer: KL-hat summed over its generated tokens, by TRL's per-token k3 (the default) or k1.

    With r_t = log pi_0(y_t | x, y_<t) - log pi_theta(y_t | x, y_<t):
      k3 = sum_t exp(r_t) - r_t - 1   (Schulman 2020; what TRL GRPO subtracts): >= 0 per token, 0 at the start;
      k1 = sum_t -r_t                 the summed log-ratio: can be negative for one answer.
    Why k3: the answers are greedy (the recipe for rewards), not samples of pi_theta, so neither is an unbiased
    KL; what matters for a zeroth-order step is the direction the brake's difference f(theta + eps z) -
    f(theta - eps z) pushes. k1 is linear in log pi_theta(y): at the start its difference is 2 eps z . grad log
    pi_theta(y), first order, so the brake pushes the model to make its own answers less likely. k3 is quadratic
    in r near 0 (exp(r) - r - 1 = r^2/2 + O(r^3)), so its difference is O(eps^2) at the start and it grows in
    every direction the weights drift: a brake, not a push (`tests/test_kl_brake.py` measures both). Neither
    survives a large probe radius: when each probe's own perturbation moves KL-hat more than the reward moves,
    the brake adds noise, not a pull (docs/generation-quality.md: why the anchor is the brake for ZO).
    k3 needs each answer token's log-prob from both models (`loglik(reduce="tokens")`), which every LM of the
    protocol gives (in process, vLLM, `UntunedLM`, and a batched population member, scored in the forward that
    serves that member). An empty answer has no tokens and scores 0.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"{name}: the KL estimator must be one of {ESTIMATORS}, got {estimator!r}")
    n = len(answers)
    tuned = lm.loglik([lm.prompt_text(p) for p in prompts], list(answers), reduce="tokens")
    untuned = reference.loglik([reference.prompt_text(p) for p in prompts], list(answers), reduce="tokens")
    if len(tuned) != n or len(untuned) != n:
        raise ObjectiveError(f"{name}: {len(tuned)} tuned and {len(untuned)} reference token log-prob lists for {n} "
                             "answers (one per answer)")
    out = []
    for i, (lp, lp0) in enumerate(zip(tuned, untuned)):
        if len(lp) != len(lp0):
            raise ObjectiveError(f"{name}: answer {i} has {len(lp)} tokens under the tuned model but {len(lp0)} under "
                                 "the reference: pi_0 must share the tuned model's tokenizer")
        r = check_values(name, [b - a for a, b in zip(lp, lp0)], len(lp), what=f"log-ratios of answer {i}")
        if estimator == "k1":
            out.append(-math.fsum(r))  # sum_t log pi_theta(y_t) - log pi_0(y_t)
        else:  # expm1(r) - r = exp(r) - r - 1 without cancellation for small r
            out.append(math.fsum(math.expm1(min(x, 30.0)) - x for x in r))  # r > 30: a token pi_theta all but rules out
    return out


class KLBrake:
    """What an objective over generated text holds for its brake: beta (`kl=`) and pi_0 (`reference=`).

    pi_0 is an LM over the weights the run started from: `blackbox_zo.lm.UntunedLM(lm, space)` for steering
    vectors, prefixes and LoRA (the same weights with the space switched off, no copy), or a second copy of the
    model for a space over the weights. A config run sets both from `objective: {kl: beta}`.
    """

    kl: float = 0.0
    reference: LM | None = None
    kl_estimator: str = "k3"  # objectives.kl.kl_hat says why k3, not k1
    # "answers": KL-hat of each probe's own answers (summed per answer); "untuned": the exact per-token KL on pi_0's
    # own greedy answers to the same prompts, teacher-forced (mean per answer token): fixed continuations, so the
    # term is a smooth function of theta (a Fisher-weighted anchor, 0 with zero slope at the start), not noise
    kl_on: str = "answers"

    def use_reference(self, reference: LM | None, kl: float | None = None, kl_on: str | None = None) -> None:
        """Set pi_0 (also the reference of the text report's NLL) and, when given, beta and what the KL is read on."""
        self.reference = reference
        self.__dict__.pop("_untuned_answers", None)  # pi_0's cached answers belong to the reference they came from
        if kl is not None:
            self.kl = check_beta(kl)
        if kl_on is not None:
            if kl_on not in KL_ON:
                raise ValueError(f"kl_on must be one of {KL_ON}, got {kl_on!r}")
            self.kl_on = kl_on

    def drift(self, lm: LM, prompts: Sequence[str], answers: Sequence[str]) -> list[float] | None:
        """KL-hat of each answer when the brake is on (kl > 0), else None (no extra forward)."""
        if not self.kl:
            return None
        if self.reference is None:
            raise ObjectiveError(f"{getattr(self, 'name', 'objective')}: kl={self.kl} needs reference= (pi_0, e.g. "
                                 "blackbox_zo.lm.UntunedLM(lm, space)); a config run sets it from objective.kl")
        if self.kl_on == "untuned":
            return self.untuned_drift(lm, prompts)
        return kl_hat(lm, self.reference, prompts, answers, getattr(self, "name", "kl"), self.kl_estimator)

    def untuned_drift(self, lm: LM, prompts: Sequence[str]) -> list[float]:
        """Per prompt: mean per-token KL(pi_theta || pi_0) on pi_0's greedy answer, its distributions read once."""
        cache = self.__dict__.setdefault("_untuned_answers", {})  # prompt -> (pi_0's answer, its log-distributions)
        missing = [p for p in dict.fromkeys(prompts) if p not in cache]
        if missing:
            answers = self.reference.generate(missing, **{**vars(self.generation), "temperature": 0.0, "seed": 0})
            logprobs = self.reference.answer_logprobs([self.reference.prompt_text(p) for p in missing], answers)
            cache.update({p: (a, lp) for p, a, lp in zip(missing, answers, logprobs)})
        fixed = [cache[p] for p in prompts]
        per_token = lm.answer_kl([lm.prompt_text(p) for p in prompts], [a for a, _ in fixed], [lp for _, lp in fixed])
        return [math.fsum(k) / len(k) if k else 0.0 for k in per_token]  # (1/T) sum_t KL_t per answer

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
