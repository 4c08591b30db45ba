"""Generation settings shared by every scorer of completions (rewards, reward models, judges).

The engine passes one seed per step; both sides of a perturbation pair reuse it, so sampling noise cancels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .base import Objective, ObjectiveError, Score, check_texts, prompts_for
from .kl import KLBrake
from .text_report import text_report, with_answers

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


@dataclass(frozen=True)
class Generation:
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None  # used when evaluate() gets no seed
    stop: list[str] | None = None

    def run(self, lm: LM, prompts: list[str], seed: int | None = None) -> list[str]:
        kwargs = asdict(self)
        kwargs["seed"] = self.seed if seed is None else seed
        return lm.generate(prompts, **kwargs)


class CompletionObjective(KLBrake, Objective):
    """An objective that generates a completion per prompt and scores (prompt, completion) pairs.

    With `kl` > 0 (and `reference`, pi_0) each answer's value is its reward - kl x KL-hat (objectives.kl);
    the Score carries the prompts and answers, so `text_report` can describe them at validation.
    """

    template: Any = None  # format string, function of the example, or None for the "prompt" column
    generation: Generation = Generation()  # frozen, so sharing the default is safe

    def prompts(self, batch: list[dict]) -> list[str]:
        return prompts_for(self.template, batch)

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[str]:
        return check_texts(self.name, self.generation.run(lm, self.prompts(batch), seed), len(batch))

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        raise NotImplementedError

    def evaluate(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> Score:
        """score() of fresh answers, braked by kl x KL-hat when kl > 0, with the prompts and answers in its info."""
        if not batch:
            raise ObjectiveError(f"{self.name}: empty batch")
        prompts, answers = self.prompts(batch), self.outputs(lm, batch, seed=seed)
        score = self.braked(self.score(batch, answers), self.drift(lm, prompts, answers))
        return with_answers(score, prompts, answers)

    def text_report(self, score: Score, lm: LM | None = None) -> dict[str, float] | None:
        """Text metrics of the answers `score` carries; their NLL under pi_0 when a reference is set, and their
        per-token KL from pi_0 when the tuned `lm` is given too."""
        return text_report(score, self.reference, lm)
