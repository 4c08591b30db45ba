"""What MeZO and AskTell share: an Engine built from Spec keywords (the rest build a ParamSpace), and its log.

`attach` logs into a trajectory (resume replays it first), `replay` applies logged steps, `from_trajectory`
rebuilds a face from base weights and a log, and `report` says what a run's summary holds about the weights.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from blackbox_zo.faces.protocol import as_trajectory, replay_method
from blackbox_zo.step.engine import Engine, StepResult
from blackbox_zo.step.spec import Spec
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError
from blackbox_zo.step.transforms import Transform, rebuild
from blackbox_zo.weights.backend import Backend
from blackbox_zo.weights.params import ParamSpace


def is_backend(params) -> bool:
    """True for a ready ParamSpace or any object implementing the Backend contract (not a module)."""
    return isinstance(params, ParamSpace) or (not isinstance(params, torch.nn.Module) and isinstance(params, Backend))


def as_backend(params, **space_kwargs) -> Any:
    """A Backend from a module, parameters, a dict of tensors, or an existing ParamSpace/Backend (None stays None)."""
    if params is None or is_backend(params):
        if space_kwargs:
            raise ValueError(f"{sorted(space_kwargs)} apply when building a ParamSpace, not to a ready backend")
        return params
    return ParamSpace(params, **space_kwargs)


def build_engine(params, spec: Spec | None, compare, max_nonfinite: int, transform: Transform | None,
                 kwargs: dict) -> Engine:
    """Spec from `spec` or the Spec keywords in kwargs, a backend from the rest."""
    if spec is not None:
        space_kwargs = kwargs
    else:
        spec, space_kwargs = Spec.split(kwargs)
    return Engine(as_backend(params, **space_kwargs), spec, compare, max_nonfinite, transform)


def load_replay(params, path: str | os.PathLike) -> tuple[Spec, Trajectory, dict]:
    """Read a trajectory and check that `params` can replay it; returns its Spec, the log and the face's keywords
    (ParamSpace's, and the logged transform)."""
    log = Trajectory(path)
    if log.header is None:
        raise TrajectoryError(f"{path} holds no trajectory header")
    cfg = log.header["config"]
    space_kwargs = {"transform": rebuild(cfg["transform"])} if "transform" in cfg else {}
    evaluate = cfg.get("evaluate", "inplace")  # logs from before batched evaluation walked in place
    if is_backend(params):  # a ready backend: its noise kind and evaluation must be the recorded ones
        if params.noise_kind != cfg["noise"]:
            raise TrajectoryError(f"{path} was recorded with {cfg['noise']} noise, the backend uses {params.noise_kind}")
        if params.evaluate_mode != evaluate:
            raise TrajectoryError(f"{path} was recorded with evaluate={evaluate!r}, the space uses "
                                  f"{params.evaluate_mode!r}: build it with evaluate={evaluate!r}")
    elif params is not None:
        space_kwargs.update(noise=cfg["noise"], evaluate=evaluate)
    return Spec.from_dict(cfg["spec"]), log, space_kwargs


def check_base(engine: Engine, log: Trajectory, path) -> None:
    cfg = log.header["config"]
    if engine.backend.generator_id() != cfg["generator"]:
        raise TrajectoryError(f"{path} was recorded with noise stream {cfg['generator']}, "
                              f"these weights use {engine.backend.generator_id()} (move them to that device type)")
    if engine.backend.fingerprint() != log.header["base_fingerprint"]:
        raise TrajectoryError(f"{path}: the given weights are not the base weights this log was recorded from")


class EngineFace:
    """What MeZO and AskTell share: an Engine built from Spec keywords (the rest go to ParamSpace), and its log.

    `transform=bz.chain(...)` replaces the update the Spec's optimizer settings name (logged, so replay rebuilds it).
    """

    last: StepResult | None = None

    def __init__(self, params, *, spec: Spec | None = None, compare: Callable[[Any, Any], float] | None = None,
                 trajectory: str | os.PathLike | None = None, resume: bool = False, max_nonfinite: int = 5,
                 transform: Transform | None = None, **kwargs):
        self.engine = build_engine(params, spec, compare, max_nonfinite, transform, kwargs)
        self.backend = self.engine.backend
        if trajectory is not None:
            self.attach(trajectory, resume)

    @property
    def spec(self) -> Spec:
        return self.engine.spec

    @property
    def maximize(self) -> bool:
        return self.engine.spec.maximize

    @property
    def pairwise(self) -> bool:
        return self.engine.spec.estimator == "pairwise"

    def attach(self, trajectory: Trajectory | str | os.PathLike, resume: bool = False) -> None:
        """Log every step to `trajectory`; with resume, first replay the steps it holds (from the base weights)."""
        with torch.no_grad():
            self.engine.attach(as_trajectory(trajectory), resume)

    @replay_method
    def replay(self, records) -> None:
        """Apply logged steps (Trajectory(path).records) without evaluating: how a replica catches up."""
        with torch.no_grad():
            self.engine.replay(records)

    def report(self) -> dict:
        """The summary's part about the weights: how many numbers are tuned, and their fingerprint now."""
        return {"tuned_elements": self.backend.numel(), "final_fingerprint": self.backend.fingerprint()}

    @property
    def step_count(self) -> int:
        return self.engine.step_count

    @property
    def nonfinite_steps(self) -> int:
        return self.engine.nonfinite_steps

    def record(self, result: StepResult) -> dict:
        """The trajectory line of a step's result: what a log, or the driver of remote replicas, writes for it."""
        return self.engine.record(result)

    def close(self) -> None:
        if self.engine.trajectory is not None:
            self.engine.trajectory.close()

    @classmethod
    def from_trajectory(cls, params, path: str | os.PathLike, steps: int | None = None, **space_kwargs):
        """Base `params` + a trajectory file's steps (or its first `steps`): the tuned weights, ready to go on."""
        spec, log, recorded = load_replay(params, path)
        compare = (lambda a, b: 0.0) if spec.estimator == "pairwise" else None  # never called: preferences are logged
        self = cls(params, spec=spec, compare=compare, **{**recorded, **space_kwargs})
        if params is not None:
            check_base(self.engine, log, path)
        self.replay(log.records if steps is None else log.records[:steps])
        return self
