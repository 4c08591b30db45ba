"""One zeroth-order step, in place: walk the estimator's points, measure, restore + update in one pass.

MeZO's four passes over the weights (+eps z, -2 eps z, +eps z, -lr g z) become three: the restore and
the update share one pass per seed. Any failure while the weights are perturbed restores them before
the error propagates. Every step is logged so that replaying the log reproduces the weights bitwise.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .noise import derive_seed
from .params import merge_pairs
from .trajectory import Trajectory, TrajectoryError


class ObjectiveError(RuntimeError):
    """The objective failed (raised or returned a non-number) while the weights were perturbed."""


class NonFiniteObjective(ObjectiveError):
    """Too many consecutive steps whose objective values were NaN or infinite."""


def as_scalar(value: Any, where: str) -> float:
    """A Python float from a float, int, numpy scalar or one-element tensor; otherwise a clear error."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ObjectiveError(f"objective returned a tensor of shape {tuple(value.shape)} at {where}; expected one number")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ObjectiveError(f"objective returned {type(value).__name__} ({value!r:.60}) at {where}; expected a number")
    return float(value)


def describe_point(point: Sequence[tuple[int, float]]) -> str:
    return "theta" if not point else " ".join(f"theta{scale:+g}*z(seed={seed})" for seed, scale in point)


@dataclass
class StepResult:
    step: int
    values: list[float]
    grad: list[tuple[int, float]]
    lr: float
    skipped: bool = False
    checks: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        """The step's estimate of the objective: the mean of the measured values."""
        return sum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def projected_grad(self) -> float:
        """Norm of the projected-gradient coefficients (|g| along the sampled directions)."""
        return math.sqrt(sum(c * c for _, c in self.grad))


class Engine:
    """Runs steps of (estimator, optimizer) against a Backend, logging each to an optional trajectory."""

    def __init__(self, backend, estimator, optimizer, seed: int, maximize: bool, max_nonfinite: int = 5):
        if optimizer.conservative and estimator.name not in ("spsa", "one_sided"):
            raise ValueError("the conservative optimizer needs a value estimate of f(theta): use estimator 'spsa' or 'one_sided'")
        if optimizer.dense is not None and not hasattr(backend, "map_dense"):
            raise ValueError(f"optimizer {optimizer.spec['name']!r} keeps dense state and needs an in-process ParamSpace backend")
        self.backend, self.estimator, self.optimizer = backend, estimator, optimizer
        self.seed, self.maximize, self.max_nonfinite = int(seed), bool(maximize), max_nonfinite
        self.step_count = 0
        self.nonfinite_steps = 0
        self._nonfinite_run = 0
        self.trajectory: Trajectory | None = None

    # --- config and logs ---------------------------------------------------------------------------
    def config(self) -> dict:
        est = {k: v for k, v in vars(self.estimator).items() if isinstance(v, (int, float, str))}
        return {
            "seed": self.seed, "maximize": self.maximize, "estimator": est, "optimizer": self.optimizer.spec,
            "numel": self.backend.numel(), "noise": self.backend.noise_kind, "generator": self.backend.generator_id(),
        }

    def attach(self, trajectory: Trajectory, resume: bool) -> None:
        """Start logging; with resume, first replay the steps already in the log (weights must be the base)."""
        if trajectory.records and not resume:
            raise TrajectoryError(f"{trajectory.path} already holds {len(trajectory.records)} steps: pass resume=True or a new path")
        fingerprint = self.backend.fingerprint()
        if trajectory.header is not None and trajectory.header["base_fingerprint"] != fingerprint:
            raise TrajectoryError(
                f"{trajectory.path}: these weights are not the base weights the log was recorded from "
                f"(fingerprint {fingerprint} != {trajectory.header['base_fingerprint']})"
            )
        trajectory.start(self.config(), fingerprint)
        self.replay(trajectory.records)
        self.trajectory = trajectory

    def replay(self, records: Sequence[dict]) -> None:
        """Re-run logged steps with their logged values instead of the objective (no evaluation)."""
        for rec in records:
            if rec["step"] != self.step_count:
                raise TrajectoryError(f"trajectory step {rec['step']} found where step {self.step_count} was expected")
            result = self.step(None, logged=rec)
            if [list(p) for p in result.grad] != [list(p) for p in rec["grad"]]:
                raise TrajectoryError(f"replay of step {rec['step']} does not reproduce the logged gradient")

    # --- the step ------------------------------------------------------------------------------------
    def _walk(self, points, evaluate: Callable[[], Any] | None, step: int) -> tuple[list[Any], list[tuple[int, float]]]:
        """Visit each point theta + offset in turn; return results and the offset still applied."""
        current: dict[int, float] = {}
        results = []
        try:
            for i, point in enumerate(points):
                target = dict(point)
                delta = [(s, target.get(s, 0.0) - current.get(s, 0.0)) for s in {**current, **target}]
                self.backend.apply(delta)
                current = target
                if evaluate is not None:
                    try:
                        results.append(evaluate())
                    except Exception as e:
                        raise ObjectiveError(
                            f"objective raised {type(e).__name__}: {e} (step {step}, point {i}: {describe_point(point)}); "
                            "weights were restored"
                        ) from e
        except BaseException:
            self.backend.apply([(s, -c) for s, c in current.items()])  # restore theta before propagating
            raise
        return results, [(s, -c) for s, c in current.items()]

    def step(self, evaluate: Callable[[], Any] | None, logged: dict | None = None) -> StepResult:
        t = self.step_count
        step_seed = derive_seed(self.seed, "step", t)
        points = self.estimator.points(step_seed)
        results, restore = self._walk(points, evaluate if logged is None else None, t)
        try:
            if logged is None:
                values = self.estimator.reduce(results) if self.estimator.name == "pairwise" else [
                    as_scalar(r, f"step {t}, point {i}: {describe_point(points[i])}") for i, r in enumerate(results)
                ]
            else:
                values = [float(v) for v in logged["values"]]
        except BaseException:
            self.backend.apply(restore)
            raise
        lr = self.optimizer.schedule(t)
        if not all(math.isfinite(v) for v in values):
            return self._skip(t, step_seed, values, restore, lr)
        self._nonfinite_run = 0
        grad = self.estimator.gradient(step_seed, values)
        ascend = self.maximize or self.estimator.name == "pairwise"  # preferences always point uphill
        loss_grad = [(s, -c) for s, c in grad] if ascend else grad  # minimise L = -f when maximising
        checks: list[float] = []
        if self.optimizer.dense is not None:
            self.backend.apply(restore)
            self.optimizer.dense.apply(self.backend, loss_grad, lr)
        else:
            update = self.optimizer.updates(loss_grad, t)
            self.backend.apply(list(restore) + list(update))  # restore and update fused: one pass per seed
            if self.optimizer.conservative:
                checks = self._conservative(update, values, evaluate, logged, t)
        if self.optimizer.weight_decay:
            self.backend.decay(1.0 - lr * self.optimizer.weight_decay)  # decoupled: theta <- (1 - lr wd) theta
        result = StepResult(t, values, grad, lr, checks=checks)
        self._log(result, step_seed)
        return result

    def _conservative(self, update, values, evaluate, logged, t) -> list[float]:
        """ZO-SGD-Cons: keep theta + u, theta - u or theta, whichever scores best (up to 2 more evaluations)."""
        better = (lambda a, b: a > b) if self.maximize else (lambda a, b: a < b)  # noqa: E731
        f0 = values[0] if self.estimator.name == "one_sided" else sum(values) / len(values)  # ~f(theta)
        logged_checks = list(logged["checks"]) if logged else None
        checks: list[float] = []

        def measure(point_desc: str) -> float:
            if logged_checks is not None:
                return float(logged_checks[len(checks)])
            return as_scalar(evaluate(), f"step {t}, conservative check at {point_desc}")

        back = [(s, -c) for s, c in update]
        try:
            checks.append(measure("theta + u"))
            if better(checks[0], f0):
                return checks
            self.backend.apply([(s, 2 * c) for s, c in back])  # theta + u -> theta - u
            checks.append(measure("theta - u"))
            if better(checks[1], f0):
                return checks
            self.backend.apply(update)  # neither helps: back to theta
            return checks
        except BaseException:
            self.backend.apply(back if len(checks) == 0 else update)  # return to theta
            raise

    def _skip(self, t, step_seed, values, restore, lr) -> StepResult:
        self.backend.apply(restore)
        self.nonfinite_steps += 1
        self._nonfinite_run += 1
        warnings.warn(f"step {t}: non-finite objective values {values}; update skipped ({self.nonfinite_steps} so far)")
        result = StepResult(t, values, [], lr, skipped=True)
        self._log(result, step_seed)
        if self._nonfinite_run >= self.max_nonfinite:
            raise NonFiniteObjective(
                f"objective was NaN/inf on {self._nonfinite_run} consecutive steps (last values {values}); weights restored"
            )
        return result

    def _log(self, r: StepResult, step_seed: int) -> None:
        self.step_count += 1
        if self.trajectory is not None:
            self.trajectory.append({
                "step": r.step, "seed": step_seed, "values": r.values, "checks": r.checks, "lr": r.lr,
                "grad": [[s, c] for s, c in r.grad], "skipped": r.skipped,
            })
