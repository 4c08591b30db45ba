"""The torch.optim-style face: `opt = MeZO(model, maximize=True); value = opt.step(closure)`.

The closure re-evaluates the objective at the current (perturbed) weights and returns a number (outputs
for the pairwise estimator); it is called under torch.no_grad(). Settings are the keywords of `Spec`;
other keywords go to `ParamSpace`. Same seed, same closure => bitwise the same run. With
`trajectory=PATH` every step is logged; `resume=True` replays the log onto the base weights and carries on.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from blackbox_zo.step.engine import Engine, StepResult
from blackbox_zo.step.spec import Spec
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError
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


def build_engine(params, spec: Spec | None, compare, max_nonfinite: int, trajectory, resume: bool, kwargs: dict) -> Engine:
    """Spec from `spec` or the Spec keywords in kwargs, a backend from the rest; attach the trajectory."""
    if spec is not None:
        space_kwargs = kwargs
    else:
        spec, space_kwargs = Spec.split(kwargs)
    engine = Engine(as_backend(params, **space_kwargs), spec, compare, max_nonfinite)
    if trajectory is not None:
        engine.attach(Trajectory(trajectory), resume)
    return engine


def load_replay(params, path: str | os.PathLike) -> tuple[Spec, Trajectory, dict]:
    """Read a trajectory and check that `params` can replay it; returns its Spec, the log and ParamSpace keywords."""
    log = Trajectory(path)
    if log.header is None:
        raise TrajectoryError(f"{path} holds no trajectory header")
    cfg = log.header["config"]
    space_kwargs = {}
    evaluate = cfg.get("evaluate", "inplace")  # logs from before batched evaluation walked in place
    if is_backend(params):  # a ready backend: its noise kind and evaluation must be the recorded ones
        if params.noise_kind != cfg["noise"]:
            raise TrajectoryError(f"{path} was recorded with {cfg['noise']} noise, the backend uses {params.noise_kind}")
        if getattr(params, "evaluate_mode", "inplace") != evaluate:
            raise TrajectoryError(f"{path} was recorded with evaluate={evaluate!r}, the space uses "
                                  f"{getattr(params, 'evaluate_mode', 'inplace')!r}: build it with evaluate={evaluate!r}")
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
    """What MeZO and AskTell share: an Engine built from Spec keywords (the rest go to ParamSpace), and its log."""

    def __init__(self, params, *, spec: Spec | None = None, compare: Callable[[Any, Any], float] | None = None,
                 trajectory: str | os.PathLike | None = None, resume: bool = False, max_nonfinite: int = 5, **kwargs):
        self.engine = build_engine(params, spec, compare, max_nonfinite, trajectory, resume, kwargs)
        self.backend = self.engine.backend

    @property
    def spec(self) -> Spec:
        return self.engine.spec

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
        with torch.no_grad():
            self.engine.replay(log.records if steps is None else log.records[:steps])
        return self


class MeZO(EngineFace):
    """Zeroth-order optimizer over a model's weights (MeZO, ZO-Bench, ES variants) with a torch.optim-style step."""

    last: StepResult | None = None

    def step(self, closure: Callable[[], Any]) -> float:
        """One ZO step; returns the mean of the objective values measured (pairwise: mean preference)."""
        with torch.no_grad():
            self.last = self.engine.step(closure)
        return self.last.value

    @classmethod
    def replay(cls, params, path: str | os.PathLike, steps: int | None = None, **space_kwargs) -> MeZO:
        """Rebuild tuned weights from base `params` and a trajectory file (optionally its first `steps` steps)."""
        return cls.from_trajectory(params, path, steps, **space_kwargs)
