"""Negative log-likelihood (cross-entropy) of a target continuation: the differentiable loss MeZO compares against.

Forward passes only; the engine minimises it (maximize=False), exactly as first-order fine-tuning would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .base import Objective, Score, check_values, mean_score, prompts_for

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


class NegativeLogLikelihood(Objective):
    """-log p(target | prompt), per example; reduce="mean" divides by target tokens (cross-entropy in nats).

    With reduce="sum" the value is the sequence NLL; with "mean" it is the per-token cross-entropy
    averaged over examples (each example weighs the same, as in MeZO's per-example loss).
    """

    maximize = False

    def __init__(self, template: str | Callable[[dict], str] | None, target: str | Callable[[dict], str],
                 *, reduce: str = "mean", name: str | None = None) -> None:
        if reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
        self.template, self.target, self.reduce = template, target, reduce
        self.name = name or ("cross_entropy" if reduce == "mean" else "nll")

    def targets(self, batch: list[dict]) -> list[str]:
        if callable(self.target):
            return [self.target(ex) for ex in batch]
        return [str(ex[self.target]) for ex in batch]  # a column name

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[float]:
        return lm.loglik(prompts_for(self.template, batch), self.targets(batch), reduce=self.reduce)

    def score(self, batch: list[dict], outputs: list[float]) -> Score:
        logliks = check_values(self.name, outputs, len(batch), what="logliks")
        return mean_score(self.name, [-v for v in logliks])  # NLL = -log p
