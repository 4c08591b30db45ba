"""Generation settings shared by every scorer of completions (rewards, reward models, judges).

The engine passes one seed per step; both sides of a perturbation pair reuse it, so sampling noise cancels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .base import Objective, Score, check_texts, prompts_for

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


class CompletionObjective(Objective):
    """An objective that generates a completion per prompt and scores (prompt, completion) pairs."""

    template: Any = None  # format string, function of the example, or None for the "prompt" column
    generation: Generation = Generation()  # frozen, so sharing the default is safe

    def prompts(self, batch: list[dict]) -> list[str]:
        return prompts_for(self.template, batch)

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[str]:
        return check_texts(self.name, self.generation.run(lm, self.prompts(batch), seed), len(batch))

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        raise NotImplementedError
