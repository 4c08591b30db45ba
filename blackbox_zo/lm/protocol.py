"""The LM protocol: the calls an objective makes on a language model, whatever runs it.

TransformersLM (in process) and VLLMBackend (vLLM workers) both satisfy it; objectives type their `lm`
arguments against it under TYPE_CHECKING, so they never import the engine at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class LM(Protocol):
    """Batched scoring and seeded generation, with forward calls only (no gradients).

    Populations (a space with evaluate='batched'): the engine evaluates a step's points inside
    `with space.population(points) as members:`, calling `members.select(i)` before the objective runs at point i.
    The population is not an argument of these calls: `blackbox_zo.weights.population.active()` returns it inside
    the block (a ContextVar; None outside it, and inside `population.suspended()`). An LM that knows populations
    answers the first call of a kind by running every member's copy of the rows (rows tagged with their member
    through `members.tagged`), keeps the other members' results in `members.cache` keyed by the call's inputs,
    and returns the selected member's; later members' identical calls are answered from the cache. Any call
    returns what the same call would return with the weights moved to the selected point (up to float rounding),
    so an LM that ignores populations is still correct, one member at a time (TransformersLM batches; the
    hooks alone perturb a plain forward per member). tests/test_population.py holds this contract.
    """

    def loglik(self, prompts: Sequence[str], targets: Sequence[str], reduce: str = "sum") -> list[float]:
        """log p(target | prompt) per example, summed ("sum") or averaged per target token ("mean"); "tokens":
        the list of each target token's log-prob (what the KL brake's per-token k3 reads)."""
        ...

    def choice_logliks(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                       reduce: str = "mean") -> list[list[float]]:
        """loglik of each candidate continuation of each prompt, grouped per prompt."""
        ...

    def label_word_logits(self, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:
        """Next-token log-probabilities [n, len(words)] (float32, CPU) of each word's first token."""
        ...

    def prompt_text(self, prompt: str) -> str:
        """The text generate() continues for `prompt` (the chat template applied when the LM uses one)."""
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Completions only, cut before the first stop string; temperature 0 decodes greedily."""
        ...
