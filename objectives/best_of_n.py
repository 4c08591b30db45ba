"""Reward tuning through a smooth loss: sample k completions per prompt, keep the best, lower its cross-entropy.

A reward of generated text is piecewise constant in the weights (greedy) or drowned in sampling noise (sampled),
so f(theta + eps z) - f(theta - eps z) carries little signal. The log-likelihood of a fixed completion is smooth,
and zeroth-order steps climb it as they climb a classification cross-entropy. Re-sampling at the current weights
every round and keeping the winners is expert iteration (RAFT, Dong et al. 2023), here with forward passes only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .base import ObjectiveError
from .kl import KLBrake
from .likelihood import NegativeLogLikelihood
from .rewards import Reward

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


class BestOfN(KLBrake, NegativeLogLikelihood):
    """Per-token NLL of each prompt's best sampled completion; `refresh` draws new winners at the current weights.

    `reward` is a `Reward` (its template picks the prompt, its function scores completions); its generation
    settings give max_new_tokens and stop strings, while sampling uses `temperature`. A prompt keeps a winner
    only when its best completion beats the mean of its k samples by more than `margin`: a group whose samples
    all tie teaches nothing. `blackbox_zo.running.trainer.Trainer` calls `refresh` every `steps_per_round` steps on
    the training prompts; a loop of your own calls it the same way.

    With `kl` > 0 and `reference` (pi_0) the winners are chosen by reward - kl x KL-hat (objectives.kl), each
    sample's KL-hat measured at the weights that drew it: a completion bought by drifting far from pi_0 is not
    taught. The loss itself stays the winners' NLL.
    """

    def __init__(self, reward: Reward, *, k: int = 4, temperature: float = 1.0, margin: float = 0.0,
                 steps_per_round: int = 32, name: str = "best_of_n", kl: float = 0.0,
                 reference: LM | None = None) -> None:
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"k (completions sampled per prompt) must be an integer >= 2, got {k!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be > 0 (best-of-k needs different samples), got {temperature!r}")
        if not isinstance(steps_per_round, int) or steps_per_round < 1:
            raise ValueError(f"steps_per_round must be an integer >= 1, got {steps_per_round!r}")
        super().__init__("{context}", target="target", reduce="mean", name=name)
        self.reward, self.k, self.temperature, self.margin = reward, k, temperature, margin
        self.steps_per_round = steps_per_round  # blackbox_zo's Trainer calls refresh this often
        self.use_reference(reference, kl)

    def refresh(self, lm: LM, rows: list[dict], *, seed: int) -> tuple[list[dict], dict]:
        """Training rows {"context", "target", "reward", **row} for the next steps, and what the round measured.

        Call it at the unperturbed weights (between steps): the samples are the policy's own, seeded by `seed`.
        """
        if not rows:
            raise ObjectiveError(f"{self.name}: refresh needs at least one prompt")
        prompts = self.reward.prompts(rows)
        gen = self.reward.generation
        repeated = [p for p in prompts for _ in range(self.k)]  # k samples per prompt, grouped
        texts = lm.generate(repeated, max_new_tokens=gen.max_new_tokens, temperature=self.temperature,
                            top_p=gen.top_p, seed=seed, stop=gen.stop)
        rewards = self.reward.rewards([r for r in rows for _ in range(self.k)], texts)
        drift = self.drift(lm, repeated, texts)
        if drift is not None:  # r_i - beta KL-hat_i: the brake picks the winners
            rewards = [None if r is None else r - self.kl * d for r, d in zip(rewards, drift)]
        kept, best, sampled = [], [], []
        for i, row in enumerate(rows):
            group = [(r, t) for r, t in zip(rewards[i * self.k:(i + 1) * self.k], texts[i * self.k:(i + 1) * self.k])
                     if r is not None]
            if not group:
                continue
            mean = math.fsum(r for r, _ in group) / len(group)
            top, text = max(group, key=lambda rt: rt[0])  # the first of equal bests: deterministic
            sampled.append(mean)
            best.append(top)
            if top > mean + self.margin and text.strip():
                kept.append({**row, "context": lm.prompt_text(prompts[i]), "target": text, "reward": top})
        stats = {"sampled_reward": math.fsum(sampled) / len(sampled) if sampled else None,
                 "best_reward": math.fsum(best) / len(best) if best else None,
                 "kept": len(kept), "completions": len(texts)}
        if drift is not None:
            stats["kl"] = math.fsum(drift) / len(drift)
        return kept, stats
