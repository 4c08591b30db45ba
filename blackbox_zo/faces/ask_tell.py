"""Ask/tell: the engine without the walk, for callers that evaluate candidates themselves (remote, async, people).

`ask()` returns the step's candidates (evaluate f at theta + offset); `visit(c)` moves attached weights there
and back; `tell(results)` / `tell_values(values)` finish the step with the engine's own update code, so an
ask/tell loop equals `MeZO.step` bitwise, writes the same trajectory and resumes the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from blackbox_zo.errors import ObjectiveError
from blackbox_zo.faces.engine_face import EngineFace
from blackbox_zo.faces.protocol import replay_method
from blackbox_zo.step.engine import StepResult, Walker
from blackbox_zo.step.estimators import as_scalar


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

    steps_conservative = False  # the conservative optimizer evaluates again after the update: only MeZO.step can

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        if self.engine.keep_best is not None and not self.steps_conservative:
            raise ValueError("the conservative optimizer re-evaluates the objective after the update: use MeZO.step")
        self._pending: list[Candidate] | None = None
        self._walk: Walker | None = None  # where the weights are within the current step
        self._members = None  # batched spaces: the step's population (its LM results are shared between visits)
        self._share: list[Candidate] = []  # the candidates that population holds

    def step(self, closure: Callable[[], Any]) -> float:
        """One step as MeZO.step takes it: `closure` at every candidate in ask() order, then tell (bitwise the same)."""
        results = []
        for candidate in self.ask():
            with self.visit(candidate):
                results.append(closure())
        self.last = self.tell(results)
        return self.last.value

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
        if self.engine.batched:  # the candidate applied at use time; one population per step keeps the LM's batch
            if self._members is None:
                self.share(self.ask())
            if candidate not in self._share:
                raise ValueError(f"candidate {self._pending.index(candidate)} is not in this copy's share(): "
                                 f"declare every candidate it evaluates")
            with self._members, torch.no_grad():
                self._members.select(self._share.index(candidate))
                yield
            return
        walker = self._walker()
        walker.move_to(self._pending.index(candidate))
        try:
            with torch.no_grad():
                yield
        except BaseException:
            walker.abort()
            raise

    def share(self, candidates: Sequence[Candidate]) -> None:
        """Batched spaces: the candidates this copy will visit this step (a Ray worker's share), so the LM scores
        exactly those members in one batched forward; by default a copy's share is every candidate."""
        pending = self.ask()
        unknown = [c for c in candidates if c not in pending]
        if unknown:
            raise ValueError(f"share(): {len(unknown)} candidates are not among this step's ask()")
        self._share = list(candidates)
        self._members = self.backend.population([list(c.offset) for c in self._share]) if self.engine.batched else None

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
        """Finish the step from what the objective returned at each candidate (outputs, for 'pairwise').

        If the results cannot be reduced (a wrong count, a non-number, a compare that raises), theta is back
        and the step can be visited and told again."""
        try:
            points = [list(c.offset) for c in self._check(results)]
            values = self.engine.estimator.reduce(list(results), points, self.step_count)
        except BaseException:
            self.restore()
            raise
        return self.tell_values(values)

    def tell_values(self, values: Sequence[float]) -> StepResult:
        """Finish the step from reduced values: one per candidate, or one preference per direction for 'pairwise'.

        On any failure the weights are back at theta: a bad value leaves the step to be told again; a failure
        of the update itself (e.g. NonFiniteObjective, after the step was logged as skipped) ends the step."""
        if self._pending is None:
            self.ask()
        t = self.step_count
        try:
            vals = [as_scalar(v, f"step {t}, value {i}") for i, v in enumerate(values)]
            expected = self.engine.estimator.value_count()
            if len(vals) != expected:
                raise ObjectiveError(f"tell_values() got {len(vals)} values for step {t}; expected {expected}")
        except BaseException:
            self.restore()
            raise
        with torch.no_grad():
            if self.engine.batched:  # the weights were never moved
                restore = []
            else:
                restore = self._walker().finish() if self._walk is None or self._walk.cursor <= len(self._pending) else []
            try:
                result = self.engine.finish(vals, restore)
            except BaseException:
                if self.step_count == t and self.backend is not None:  # the update never ran: undo the walk alone
                    self.backend.apply(restore)
                self._walk = None
                if self.step_count != t:
                    self._pending, self._members = None, None
                raise
        self._pending, self._walk, self._members = None, None, None
        return result

    def groups(self) -> list[tuple[int, ...]]:
        """The candidates each told value is measured from, in tell_values order: one each, or a pair per direction
        for 'pairwise' (its value is the compare of the pair's outputs)."""
        size = len(self.ask()) // self.engine.estimator.value_count()
        return [tuple(range(k * size, (k + 1) * size)) for k in range(self.engine.estimator.value_count())]

    def prefer(self, direction: int, out_plus: Any, out_minus: Any) -> float:
        """'pairwise': the preference of `direction` of this step from its two outputs (the value tell_values takes)."""
        if self.spec.estimator != "pairwise":
            raise ValueError(f"prefer() judges output pairs of estimator 'pairwise', not {self.spec.estimator!r}")
        if not 0 <= direction < self.engine.estimator.value_count():
            raise ValueError(f"direction {direction} is not one of this step's 0-{self.engine.estimator.value_count() - 1}")
        return self.engine.estimator.preference(out_plus, out_minus, self.step_count, direction)

    def _check(self, results: Sequence[Any]) -> list[Candidate]:
        cands = self.ask()
        if len(results) != len(cands):
            raise ObjectiveError(f"tell() got {len(results)} results for {len(cands)} candidates (step {self.step_count})")
        return cands

    @replay_method
    def replay(self, records: Sequence[dict]) -> None:
        """Apply logged steps (Trajectory(path).records) without evaluating: how a replica catches up."""
        super().replay(records)
        self._pending, self._walk, self._members = None, None, None
