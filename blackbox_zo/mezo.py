"""The torch.optim-style face: `opt = MeZO(model, lr, eps, seed, maximize); value = opt.step(closure)`.

The closure re-evaluates the objective at the current (perturbed) weights and returns a number; it is
called under torch.no_grad(). Same seed, same closure => bitwise the same run. With `trajectory=PATH`
every step is logged; `resume=True` replays the log onto the base weights and carries on.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from .backend import Backend
from .engine import Engine, StepResult
from .estimators import make_estimator
from .optim import make_optimizer
from .params import ParamSpace
from .trajectory import Trajectory, TrajectoryError


def is_backend(params) -> bool:
    """True for a ready ParamSpace or any object implementing the Backend contract (not a module)."""
    return isinstance(params, ParamSpace) or (not isinstance(params, torch.nn.Module) and isinstance(params, Backend))


def as_backend(params, **space_kwargs) -> Any:
    """A Backend from a module, parameters, a dict of tensors, or an existing ParamSpace/Backend."""
    if is_backend(params):
        if space_kwargs:
            raise ValueError(f"{sorted(space_kwargs)} apply when building a ParamSpace, not to a ready backend")
        return params
    return ParamSpace(params, **space_kwargs)


class MeZO:
    """Zeroth-order optimizer over a model's weights (MeZO, ZO-Bench variants) with a torch.optim-style step."""

    def __init__(
        self,
        params,
        lr: float = 1e-6,
        eps: float = 1e-3,
        seed: int = 0,
        maximize: bool = False,
        *,
        estimator: str = "spsa",
        n: int = 1,
        shaping: str = "zscore",
        compare: Callable[[Any, Any], float] | None = None,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        window: int | None = None,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        schedule: dict | str | None = None,
        clip_value: float | None = None,
        trajectory: str | os.PathLike | None = None,
        resume: bool = False,
        max_nonfinite: int = 5,
        **space_kwargs,
    ):
        est_kwargs: dict[str, Any] = {"eps": eps, "n": n}
        if estimator == "population":
            est_kwargs["shaping"] = shaping
        if estimator == "pairwise":
            if compare is None:
                raise ValueError("estimator 'pairwise' needs compare=callable(out_plus, out_minus) -> preference in [-1, 1]")
            est_kwargs["compare"] = compare
        elif compare is not None:
            raise ValueError(f"compare= is only used by estimator 'pairwise', not {estimator!r}")
        est = make_estimator(estimator, **est_kwargs)
        opt = make_optimizer(optimizer, lr, schedule, momentum, window, betas, weight_decay=weight_decay, clip_value=clip_value)
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {type(seed).__name__}")
        self.backend = as_backend(params, **space_kwargs)
        self.engine = Engine(self.backend, est, opt, seed, maximize, max_nonfinite)
        self.last: StepResult | None = None
        if trajectory is not None:
            self.engine.attach(Trajectory(trajectory), resume)

    @property
    def step_count(self) -> int:
        return self.engine.step_count

    @property
    def nonfinite_steps(self) -> int:
        return self.engine.nonfinite_steps

    def step(self, closure: Callable[[], Any]) -> float:
        """One ZO step; returns the mean of the objective values measured (pairwise: mean preference)."""
        with torch.no_grad():
            self.last = self.engine.step(closure)
        return self.last.value

    def close(self) -> None:
        if self.engine.trajectory is not None:
            self.engine.trajectory.close()

    @classmethod
    def replay(cls, params, path: str | os.PathLike, steps: int | None = None, **kwargs) -> "MeZO":
        """Rebuild tuned weights from base `params` and a trajectory file (optionally its first `steps` steps)."""
        log = Trajectory(path)
        if log.header is None:
            raise TrajectoryError(f"{path} holds no trajectory header")
        cfg = log.header["config"]
        opt = dict(cfg["optimizer"])
        est = dict(cfg["estimator"])
        if is_backend(params):  # a ready backend: its noise kind must be the recorded one
            if params.noise_kind != cfg["noise"]:
                raise TrajectoryError(f"{path} was recorded with {cfg['noise']} noise, the backend uses {params.noise_kind}")
        else:
            kwargs.setdefault("noise", cfg["noise"])
        if est["name"] == "pairwise":
            kwargs.setdefault("compare", lambda a, b: 0.0)  # never called: replay uses logged preferences
        self = cls(
            params, lr=opt.pop("lr"), eps=est["eps"], seed=cfg["seed"], maximize=cfg["maximize"],
            estimator=est["name"], n=est.get("n", 1), shaping=est.get("shaping", "zscore"),
            optimizer=opt.pop("name"), momentum=opt["momentum"], window=opt["window"], betas=opt["betas"],
            weight_decay=opt["weight_decay"], schedule=opt["schedule"], clip_value=opt["clip_value"], **kwargs,
        )
        if self.backend.generator_id() != cfg["generator"]:
            raise TrajectoryError(f"{path} was recorded with noise stream {cfg['generator']}, "
                                  f"these weights use {self.backend.generator_id()} (move them to that device type)")
        if self.backend.fingerprint() != log.header["base_fingerprint"]:
            raise TrajectoryError(f"{path}: the given weights are not the base weights this log was recorded from")
        with torch.no_grad():
            self.engine.replay(log.records if steps is None else log.records[:steps])
        return self
