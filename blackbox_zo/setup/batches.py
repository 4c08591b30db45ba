"""What data each step sees: its rows (a round drawn by the objective, or the training rows), batch and sampling seed.

Drawn from (seed, step) and the weights alone, so the trainer, a resumed run and every Ray worker draw the same.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple, Sequence

from blackbox_zo.setup.traits import ObjectiveTraits
from blackbox_zo.weights.seeds import derive_seed


def batch_for_step(data: Sequence[dict], size: int, seed: int, step: int) -> list[dict]:
    """The step's minibatch, drawn from (seed, step) alone so resumes and replays see the same data."""
    rng = random.Random(derive_seed(seed, "batch", step))
    return [data[i] for i in rng.sample(range(len(data)), min(size, len(data)))]


class Rounds:
    """Training rows for objectives that draw their own (BestOfN, traits.steps_per_round > 0): `objective.refresh(lm,
    rows, seed=)` at the unperturbed weights every that many steps; any other objective trains on `rows` as given.

    A resumed run draws its first round afresh at the weights it resumes from (the replayed steps need no rows).
    """

    def __init__(self, objective: Any, traits: ObjectiveTraits, lm, rows: Sequence[dict], seed: int):
        self.objective, self.every = objective, traits.steps_per_round
        self.lm, self.rows, self.seed = lm, list(rows), seed
        self.data: list[dict] = []
        self.drawn_at: int | None = None

    def data_for(self, step: int) -> tuple[list[dict], dict | None]:
        """The rows of `step`, and the stats of a round drawn for it (None when no round was drawn)."""
        if not self.every:
            return self.rows, None
        if self.drawn_at is not None and self.data and step - self.drawn_at < self.every:
            return self.data, None
        for attempt in range(3):  # a round where no prompt's best beat its group draws again
            data, stats = self.objective.refresh(self.lm, self.rows, seed=derive_seed(self.seed, "round", step, attempt))
            if data:
                self.data, self.drawn_at = data, step
                return data, stats
        raise RuntimeError(f"step {step}: 3 rounds in a row found no sample better than its group; the reward "
                           "gives every completion the same value (check it on a few completions)")


class StepInput(NamedTuple):
    batch: list[dict]
    sample_seed: int  # both sides of a pair sample alike
    drawn: dict | None  # the stats of a round drawn for this step


class StepInputs:
    """The batch and sampling seed of every step, with rows from Rounds: one code path for every process.

    Call `at(step)` at the unperturbed weights of `step` (a round may be drawn there); asking again is free.
    """

    def __init__(self, objective: Any, traits: ObjectiveTraits, lm, rows: Sequence[dict], batch_size: int, seed: int):
        self.rounds = Rounds(objective, traits, lm, rows, seed)
        self.batch_size, self.seed = batch_size, seed
        self.draws_rounds = traits.steps_per_round > 0

    def at(self, step: int) -> StepInput:
        """The batch of `step` and its sampling seed; the round's stats only the first time `step` draws one."""
        data, drawn = self.rounds.data_for(step)
        return StepInput(batch_for_step(data, self.batch_size, self.seed, step), derive_seed(self.seed, "sample", step), drawn)
