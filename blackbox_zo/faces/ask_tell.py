"""Ask/tell: the engine without the walk, for callers that evaluate candidates themselves (remote, async, people).

`ask()` returns the step's candidates (evaluate f at theta + offset); `visit(c)` moves attached weights there
and back; `tell(results)` / `tell_values(values)` finish the step with the engine's own update code, so an
ask/tell loop equals `MeZO.step` bitwise, writes the same trajectory and resumes the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from blackbox_zo.faces.mezo import EngineFace
from blackbox_zo.step.engine import StepResult, Walker
from blackbox_zo.step.estimators import ObjectiveError, as_scalar


@dataclass(frozen=True)
class Candidate:
    """Evaluate the objective at theta + sum(scale * z(seed) for seed, scale in offset)."""

    offset: tuple[tuple[int, float], ...]

    @property
    def seed(self) -> int | None:
        return self.offset[0][0] if self.offset else None

    @property
    def scale(self) -> float:
        return self.offset[0][1] if self.offset else 0.0


class AskTell(EngineFace):
    """Ask for candidates, tell their results; the same Spec keywords, estimators and optimizers as MeZO.

    `params` may be None: then nothing is applied (a log-only driver whose replicas apply the updates).
    """

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        if self.engine.keep_best is not None:
            raise ValueError("the conservative optimizer re-evaluates the objective after the update: use MeZO.step")
        self._pending: list[Candidate] | None = None
        self._walk: Walker | None = None  # where the weights are within the current step

    def ask(self) -> list[Candidate]:
        """The candidates of the current step (asking again before tell returns the same ones)."""
        if self._pending is None:
            self._pending = [Candidate(tuple(map(tuple, p))) for p in self.engine.points()]
        return self._pending

    @contextlib.contextmanager
    def visit(self, candidate: Candidate) -> Iterator[None]:
        """Weights at theta + candidate.offset inside the block; on an error, theta again at once.

        Visit candidates in ask() order (skipped ones are passed through without evaluation): after a normal
        exit the weights stay at the candidate until the next visit, `tell` or `restore`, because every copy
        of theta must make the same moves to stay bitwise equal to `MeZO.step` and to a replay.
        """
        if self.backend is None:
            raise ValueError("visit() needs weights: build AskTell with a model, parameters or a backend")
        walker = self._walker()
        walker.move_to(self._pending.index(candidate))
        try:
            with torch.no_grad():
                yield
        except BaseException:
            walker.abort()
            raise

    def restore(self) -> None:
        """Put theta back now (e.g. to evaluate between visits); the step then no longer equals MeZO.step bitwise."""
        if self._walk is not None:
            self._walk.abort()
            self._walk = None

    def _walker(self) -> Walker:
        if self._walk is None:
            self._walk = Walker(self.backend, [list(c.offset) for c in self.ask()])
        return self._walk

    def tell(self, results: Sequence[Any]) -> StepResult:
        """Finish the step from what the objective returned at each candidate (outputs, for 'pairwise')."""
        points = [list(c.offset) for c in self._check(results)]
        values = self.engine.estimator.reduce(list(results), points, self.step_count)
        return self.tell_values(values)

    def tell_values(self, values: Sequence[float]) -> StepResult:
        """Finish the step from reduced values: one per candidate, or one preference per direction for 'pairwise'."""
        if self._pending is None:
            self.ask()
        vals = [as_scalar(v, f"step {self.step_count}, value {i}") for i, v in enumerate(values)]
        expected = self.engine.estimator.value_count()
        if len(vals) != expected:
            raise ObjectiveError(f"tell_values() got {len(vals)} values for step {self.step_count}; expected {expected}")
        with torch.no_grad():
            restore = self._walker().finish() if self._walk is None or self._walk.cursor <= len(self._pending) else []
            result = self.engine.finish(vals, restore)
        self._pending, self._walk = None, None
        return result

    def _check(self, results: Sequence[Any]) -> list[Candidate]:
        cands = self.ask()
        if len(results) != len(cands):
            raise ObjectiveError(f"tell() got {len(results)} results for {len(cands)} candidates (step {self.step_count})")
        return cands

    def replay(self, records: Sequence[dict]) -> None:
        """Apply logged steps (Trajectory(path).records) without evaluating: how a replica catches up."""
        with torch.no_grad():
            self.engine.replay(records)
        self._pending, self._walk = None, None
