"""The objective side of a step: the call an optimizer makes at each perturbed point, and validation.

`InProcess` runs them on the LM in this process; the trainer and every Ray worker use it, so a step's batch,
sampling seed and validation are computed by one piece of code wherever the weights live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from blackbox_zo.setup.batches import StepInputs
from blackbox_zo.setup.config import TrainConfig
from blackbox_zo.setup.traits import ObjectiveTraits
from blackbox_zo.weights.seeds import derive_seed


def value_of(score: Any) -> float:
    """The number an objective's result stands for: `Score.value`, or the result itself (a real number)."""
    value = getattr(score, "value", score)
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"an objective must return a number or a Score (with .value), got {type(value).__name__} "
                        f"{str(value)[:60]}: return the mean (e.g. objectives.mean_score(name, values))")
    return float(value)


@dataclass(frozen=True)
class Measured:
    """A validation result that crossed a process boundary: the value and per-example values (plain numbers), and
    the plain parts of the score's info a run stores: the prompts and answers of a generation, its KL-hat and reward."""

    value: float
    per_example: list | None = None
    info: dict = field(default_factory=dict)


TRAVELS = ("prompts", "answers", "kl", "reward")  # Score.info keys a worker sends back (lists of str, numbers)


def measured(score: Any) -> Measured:
    """`score` as plain data for the driver: value, per-example values, and the info keys in TRAVELS."""
    per = getattr(score, "per_example", None)
    info = getattr(score, "info", None) or {}
    return Measured(value_of(score), list(per) if per is not None else None,
                    {k: info[k] for k in TRAVELS if k in info})


def closure(objective: Any, pairwise: bool, lm, batch: list[dict], seed: int) -> Callable[[], Any]:
    """The objective on `batch` at the current weights: a number, or outputs for a pairwise compare."""
    if pairwise:
        return lambda: objective.generate(lm, batch, seed=seed)
    return lambda: value_of(objective.evaluate(lm, batch, seed=seed))


@dataclass
class StepCall:
    """What the optimizer calls at each point of step `step`; `info` joins the step's metrics row.

    `info` holds the round drawn for the step; an optimizer that evaluates elsewhere adds its own facts
    (the live Ray workers). `run` is None where the workers evaluate the step, not this process.
    """

    step: int
    run: Callable[[], Any] | None = None
    info: dict = field(default_factory=dict)

    def __call__(self) -> Any:
        if self.run is None:
            raise RuntimeError(f"step {self.step} is evaluated by the optimizer's workers, not in this process")
        return self.run()


class InProcess:
    """The objective (with its traits) and validation on the LM in this process, each step's batch drawn by StepInputs."""

    def __init__(self, lm, objective: Any, traits: ObjectiveTraits, rows: Sequence[dict], val_objective: Any,
                 val_data: Sequence[dict] | None, train: TrainConfig):
        self.lm, self.objective, self.traits, self.val_objective = lm, objective, traits, val_objective
        self.val_data = list(val_data) if val_data else None
        self.seed = train.seed
        self.inputs = StepInputs(objective, traits, lm, rows, train.batch_size, train.seed)

    def step_call(self, step: int) -> StepCall:
        """The call of `step` (ask at its unperturbed weights: a round may be drawn there)."""
        got = self.inputs.at(step)
        return StepCall(step, closure(self.objective, self.traits.pairwise, self.lm, got.batch, got.sample_seed),
                        {"round": got.drawn} if got.drawn else {})

    def validate(self, data: Sequence[dict] | None = None) -> Any:
        """The validation objective's full result on `data` (default: the validation rows) at the current weights."""
        rows = list(data if data is not None else self.val_data or [])
        return self.val_objective.evaluate(self.lm, rows, seed=derive_seed(self.seed, "eval"))
