"""The objective contract: the Protocols an objective satisfies, and its traits read once into a frozen value.

Why: whether an objective is pairwise, which way it goes, whether it takes pi_0 or draws its own rounds is decided
here alone; the trainer, the compatibility check, the workers and pi_0 read the traits and never probe the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from blackbox_zo.errors import ObjectiveError


@runtime_checkable
class ScalarObjective(Protocol):
    """Scores a batch at the current weights: a number, or a result with `.value` (objectives.base.Score)."""

    def evaluate(self, lm: Any, batch: list[dict], *, seed: int | None = None) -> Any: ...


@runtime_checkable
class PairwiseObjective(Protocol):
    """Generates outputs for a batch; the optimizer's compare judges two of them (in a run config the objective
    itself: `objective(out_plus, out_minus)`)."""

    def generate(self, lm: Any, batch: list[dict], seed: int | None = None) -> Any: ...


@runtime_checkable
class GeneratingObjective(Protocol):
    """Scores generated text: takes pi_0 (the untuned model) and, with `kl`, the KL brake's beta."""

    reference: Any  # pi_0 once given (None before)

    def use_reference(self, reference: Any, kl: float | None = None) -> None: ...


@runtime_checkable
class RoundDrawing(Protocol):
    """Draws its own training rows (BestOfN): `refresh` at the unperturbed weights every `steps_per_round` steps."""

    steps_per_round: int

    def refresh(self, lm: Any, rows: list[dict], *, seed: int) -> tuple[list[dict], dict]: ...


@runtime_checkable
class TextReporting(Protocol):
    """Describes the text a validation Score carries (objectives over generated text): repetition, distinct-2, NLL
    and drift from pi_0 (with the tuned `lm`); None when the score carries no text."""

    def text_report(self, score: Any, lm: Any = None) -> dict | None: ...


@runtime_checkable
class Named(Protocol):
    name: str  # optional: the class name stands in


@runtime_checkable
class Directed(Protocol):
    maximize: bool  # optional: an objective without it is maximised


@dataclass(frozen=True)
class ObjectiveTraits:
    name: str
    maximize: bool
    pairwise: bool  # generates outputs for a compare instead of scoring (no evaluate)
    scores: bool  # has evaluate: it can validate, and a copy of it can report the reward without the brake
    takes_reference: bool  # over generated text: pi_0 for the text report, and objective.kl
    steps_per_round: int  # > 0: draws its own rows that often (RoundDrawing); 0: trains on the rows as given


def traits_of(objective: Any) -> ObjectiveTraits:
    """The traits of `objective`, read from the Protocols it satisfies; neither scoring nor pairwise is an error."""
    scores, generates = isinstance(objective, ScalarObjective), isinstance(objective, PairwiseObjective)
    name = objective.name if isinstance(objective, Named) else type(objective).__name__
    if not (scores or generates):
        raise ObjectiveError(f"objective {name}: has neither evaluate(lm, batch, seed=) nor generate(lm, batch, seed=)")
    return ObjectiveTraits(name, bool(objective.maximize) if isinstance(objective, Directed) else True,
                           generates and not scores, scores, isinstance(objective, GeneratingObjective),
                           objective.steps_per_round if isinstance(objective, RoundDrawing) else 0)


def with_traits(task: dict) -> dict:
    """A copy of the task with 'traits' (its objective's) and 'val_traits' (of what validates: val_objective or the
    objective), computed once when the task is built."""
    traits = traits_of(task["objective"])
    val = task.get("val_objective")
    return {**task, "traits": traits, "val_traits": traits if val is None else traits_of(val)}
