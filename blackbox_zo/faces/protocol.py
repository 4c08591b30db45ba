"""The optimizer face: what the Trainer, `run` and a user's loop call on MeZO, AskTell, CMA and DistributedMeZO.

Each face steps with a closure (`step`), logs into a trajectory (`attach`: the checks live in step/attach.py),
catches up on logged steps (`replay(records)`), and says what its summary reports (`report`); MeZO, AskTell and
CMA also take a step by hand (`ask`, then `tell`: AskTellFace).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from blackbox_zo.step.trajectory import Trajectory


@runtime_checkable
class Face(Protocol):
    maximize: bool  # the objective is maximised
    pairwise: bool  # the closure returns outputs that a compare judges, not numbers
    step_count: int
    nonfinite_steps: int  # steps skipped because a value was NaN or infinite
    last: Any  # the last step's result: .value, .projected_grad, .lr, .skipped

    def step(self, closure: Callable[[], Any]) -> float:
        """One step, evaluating `closure` at each point; returns the mean value measured."""

    def attach(self, trajectory: Trajectory, resume: bool) -> None:
        """Log every step to `trajectory`; with resume, first replay the steps it holds (from the base weights)."""

    def replay(self, records: Sequence[dict]) -> None:
        """Apply logged steps (Trajectory(path).records) without evaluating."""

    def report(self) -> dict:
        """What a run's summary says about the tuned weights: tuned_elements, final_fingerprint, ..."""

    def close(self) -> None:
        """Close the trajectory (and release workers)."""


@runtime_checkable
class AskTellFace(Face, Protocol):
    """A face whose step can also be taken by hand: MeZO, AskTell and CMA (DistributedMeZO evaluates on its workers)."""

    def ask(self) -> list:
        """The current step's candidates (asking again before tell returns the same ones)."""

    def tell(self, results: Sequence[Any]) -> Any:
        """Finish the step from what the objective gave at each candidate, in ask() order."""


@runtime_checkable
class EvaluatesItself(Protocol):
    """A face that holds its weights elsewhere and evaluates there too (DistributedMeZO): the Trainer asks it for
    each step's call and for validation instead of running the objectives in this process."""

    def step_call(self, step: int) -> Any:
        """What the face evaluates at each point of `step` (its `info` joins the step's metrics row)."""

    def validate(self) -> Any:
        """The validation objective's result at the current weights."""


class replay_method:
    """`face.replay(records)` applies logged steps to this face; on the class, `Face.replay(params, path, steps=None)`
    (the older call form) rebuilds a face from base weights and a trajectory file, as `from_trajectory` does."""

    def __init__(self, method: Callable[[Any, Sequence[dict]], None]):
        self.method = method
        self.__doc__ = method.__doc__

    def __get__(self, face, cls):
        if face is None:
            return cls.from_trajectory
        return self.method.__get__(face, cls)


def as_trajectory(trajectory: Trajectory | str | os.PathLike) -> Trajectory:
    return trajectory if isinstance(trajectory, Trajectory) else Trajectory(trajectory)
