"""One zeroth-order step, in place: walk the estimator's points, reduce, estimate, transform, apply.

`Engine.step` is the only step path: `walk` visits theta + offset for each point by deltas (restoring
theta on any failure), the estimator reduces the results to values and the values to a gradient, the
optimizer chain turns it into an update, and the restore and the update share one pass per seed.
`AskTell` is this engine without the walk. Every step is logged so replay reproduces the weights bitwise.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from blackbox_zo.step.attach import attach_log
from blackbox_zo.step.conservative import conservative_wrapper
from blackbox_zo.step.estimators import ObjectiveError, describe_point, make_estimator
from blackbox_zo.step.spec import Spec
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError
from blackbox_zo.step.transforms import DenseStep, StepContext, Transform, describe, make_optimizer, needs_dense
from blackbox_zo.weights.anchor import Anchor
from blackbox_zo.weights.backend import Backend, DenseBackend
from blackbox_zo.weights.noise import derive_seed

__all__ = ["Engine", "NonFiniteObjective", "NonFiniteStep", "ObjectiveError", "StepResult", "Walker", "batched",
           "evaluate_members", "walk"]


RECENT = 10  # steps whose median value tells a plateau from a ceiling


class NonFiniteObjective(ObjectiveError):
    """Too many consecutive steps whose objective values were NaN or infinite."""


class NonFiniteStep(ObjectiveError):
    """A step's update was NaN or infinite (finite values, but a setting such as adam_eps or lr made it so)."""


@dataclass
class StepResult:
    step: int
    values: list[float]
    grad: list[tuple[int, float]]
    lr: float
    eps: float = 0.0
    update: list[tuple[int, float]] = field(default_factory=list)  # empty for dense optimizers
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


class Walker:
    """Moves the weights through a step's points in order, by deltas, and knows the pairs that restore theta.

    Bitwise reproducibility needs every copy of theta (live run, replay, ask/tell, remote replicas) to make
    the same float operations: all points visited in order, then restore + update fused into one pass.
    """

    def __init__(self, backend, points):
        self.backend, self.points = backend, points
        self.current: dict[int, float] = {}
        self.cursor = 0  # the next point to visit

    def move_to(self, k: int) -> None:
        """Visit points cursor..k in turn (moves by deltas; no evaluation in between) and stay at point k."""
        if k < self.cursor - 1:
            raise ValueError(f"point {k} comes before point {self.cursor - 1}, where the weights are: visit in ask() order")
        for i in range(self.cursor, k + 1):
            target = dict(self.points[i])
            if self.backend is not None:
                self.backend.apply([(s, target.get(s, 0.0) - self.current.get(s, 0.0)) for s in {**self.current, **target}])
            self.current = target
        self.cursor = max(self.cursor, k + 1)

    def finish(self) -> list[tuple[int, float]]:
        """Visit any points not yet visited; return the pairs that bring the weights back to theta."""
        self.move_to(len(self.points) - 1)
        return [(s, -c) for s, c in self.current.items()]

    def abort(self) -> None:
        """Back to theta at once (after a failure); the step can no longer be finished."""
        if self.backend is not None:
            self.backend.apply([(s, -c) for s, c in self.current.items()])
        self.current, self.cursor = {}, len(self.points) + 1


def batched(backend: Backend | None) -> bool:
    """True when the backend evaluates a step's points at use time (weights untouched) instead of walking them."""
    return backend is not None and backend.evaluate_mode == "batched"


def evaluate_at(evaluate: Callable[[], Any], step: int, i: int, point, weights: str) -> Any:
    """One evaluation; any failure becomes an ObjectiveError naming the step, the point and what the weights did."""
    try:
        return evaluate()
    except Exception as e:
        kept = "no step was taken" if not step else f"step{'s 1-' if step > 1 else ' '}{step} stand{'' if step > 1 else 's'}: " \
            f"the weights are those of step {step}"
        raise ObjectiveError(f"objective raised {type(e).__name__}: {e} (step {step + 1}, point {i}: "  # steps count from 1
                             f"{describe_point(point)}); at this step {weights}; {kept}") from e


def evaluate_members(backend, points, evaluate: Callable[[], Any], step: int) -> list[Any]:
    """Evaluate at each point without moving the weights: the backend's population hooks apply the point at use
    time, and an LM that knows populations batches every member's rows into one forward on the first call."""
    results = []
    with backend.population(points) as members:
        for i, point in enumerate(points):
            members.select(i)
            results.append(evaluate_at(evaluate, step, i, point, "the weights were never moved"))
    return results


def walk(backend, points, evaluate: Callable[[], Any], step: int) -> tuple[list[Any], list[tuple[int, float]]]:
    """Evaluate at each point theta + offset in turn; return the results and the pairs that restore theta."""
    walker = Walker(backend, points)
    results = []
    try:
        for i, point in enumerate(points):
            walker.move_to(i)
            results.append(evaluate_at(evaluate, step, i, point, "the weights were restored"))
    except BaseException:
        walker.abort()  # restore theta before propagating
        raise
    return results, walker.finish()


class Engine:
    """Runs steps of a Spec against a Backend (or none: log-only), logging each to an optional trajectory.

    `transform`: a user's chain (bz.chain(...)) instead of the one the Spec's optimizer settings name; the
    trajectory logs it by name and arguments, so replay rebuilds it."""

    def __init__(self, backend: Backend | None, spec: Spec, compare: Callable[[Any, Any], float] | None = None,
                 max_nonfinite: int = 5, transform: Transform | None = None):
        self.custom_transform = transform is not None
        self.transform = make_optimizer(spec) if transform is None else transform
        if needs_dense(self.transform) and not isinstance(backend, DenseBackend):
            what = "the transform" if self.custom_transform else f"optimizer {spec.optimizer!r}"
            raise ValueError(f"{what} keeps dense state and needs an in-process ParamSpace backend")
        self.backend, self.spec, self.max_nonfinite = backend, spec, max_nonfinite
        self.batched = batched(backend)  # points applied at use time: nothing to walk, nothing to restore
        if self.batched and spec.optimizer == "conservative":
            raise ValueError("the conservative optimizer evaluates theta +- u in place: build the space with evaluate='inplace'")
        self.estimator = make_estimator(spec, compare)
        self.ascend = spec.maximize or self.estimator.ascends  # pairwise always ascends its preference
        self.state = self.transform.init()
        self.keep_best = conservative_wrapper(spec)  # None, or keep_best for the conservative optimizer
        # theta_0 for the pull toward it, taken here, at the base weights (a resume replays from them too)
        self.anchor = Anchor(backend) if spec.anchor and backend is not None else None
        self.anchor_scale = 1.0  # train.drift's hold multiplies lambda by this; logged per step, so replay follows it
        self.radius = 1.0  # eps_t / eps: grows on plateaus, shrinks back when the sides differ
        self.recent: deque[float] = deque(maxlen=RECENT)  # mean values of the last steps, for the ceiling test
        self.window: list[float] = []  # radius_window: mean values of the last 2 windows, for the trend test
        self.step_count = 0
        self.nonfinite_steps = 0
        self._nonfinite_run = 0
        self.trajectory: Trajectory | None = None

    # --- where the next step evaluates --------------------------------------------------------------
    @property
    def eps(self) -> float:
        return self.spec.eps * self.radius

    def step_seed(self) -> int:
        return derive_seed(self.spec.seed, "step", self.step_count)

    def points(self):
        return self.estimator.points(self.step_seed(), self.eps)

    # --- config and logs ---------------------------------------------------------------------------
    def config(self) -> dict:
        backend = self.backend
        config = {"spec": self.spec.to_dict(), "numel": backend.numel() if backend else None,
                  "noise": backend.noise_kind if backend else None, "generator": backend.generator_id() if backend else None,
                  "evaluate": "batched" if self.batched else "inplace"}  # logs without the key walked in place
        if self.custom_transform:
            config["transform"] = describe(self.transform)
        return config

    def attach(self, trajectory: Trajectory, resume: bool) -> None:
        """Start logging; with resume, first replay the steps already in the log (weights must be the base)."""
        self.replay(attach_log(trajectory, self.config(), self.backend.fingerprint() if self.backend else None, resume))
        self.trajectory = trajectory

    def replay(self, records: Sequence[dict]) -> None:
        """Re-run logged steps with their logged values instead of the objective (no evaluation)."""
        for rec in records:
            if rec["step"] != self.step_count:
                raise TrajectoryError(f"trajectory step {rec['step']} found where step {self.step_count} was expected")
            if "eps" in rec and rec["eps"] != self.eps:
                raise TrajectoryError(f"replay of step {rec['step']}: radius {self.eps} differs from the logged {rec['eps']}")
            # the same moves as the live step, unevaluated (a batched step makes none)
            restore = [] if self.batched else Walker(self.backend, self.points()).finish()
            self.anchor_scale = float(rec.get("anchor_scale", 1.0))  # the drift hold's lambda scale at that step
            result = self.finish([float(v) for v in rec["values"]], restore, logged_checks=rec.get("checks"))
            if [list(p) for p in result.grad] != [list(p) for p in rec["grad"]]:
                raise TrajectoryError(f"replay of step {rec['step']} does not reproduce the logged gradient")

    # --- the step ------------------------------------------------------------------------------------
    def step(self, evaluate: Callable[[], Any]) -> StepResult:
        """Walk the points with `evaluate`, then finish the step from what it returned."""
        t = self.step_count
        points = self.points()
        if self.batched:
            results, restore = evaluate_members(self.backend, points, evaluate, t), []
        else:
            results, restore = walk(self.backend, points, evaluate, t)
        try:
            values = self.estimator.reduce(results, points, t)
        except BaseException:
            self.backend.apply(restore)
            raise
        return self.finish(values, restore, evaluate)

    def finish(self, values: list[float], restore, evaluate: Callable[[], Any] | None = None,
               logged_checks: Sequence[float] | None = None) -> StepResult:
        """Values -> gradient -> update; apply it together with `restore` (the pairs that bring back theta)."""
        t, seed, eps = self.step_count, self.step_seed(), self.eps
        lr = self.spec.schedule.lr(self.spec.lr, t)
        if not all(math.isfinite(v) for v in values):
            return self._skip(t, seed, values, restore, lr, eps)
        self._nonfinite_run = 0
        grad = self.estimator.gradient(seed, values, eps)
        loss_grad = [(s, -c) for s, c in grad] if self.ascend else grad  # minimise L = -f when maximising
        update, self.state = self.transform.update(loss_grad, self.state, StepContext(t, lr, self.radius))
        update = self._finite(update, restore, t, lr)
        checks: list[float] = []
        if self.backend is not None:
            if isinstance(update, DenseStep):
                self.backend.apply(restore)
                update.apply(self.backend)
            else:
                self.backend.apply(list(restore) + list(update))  # restore and update fused: one pass per seed
                if self.keep_best is not None:
                    checks = self.keep_best(self.backend, update, self.estimator.value_estimate(values),
                                            self.spec.maximize, t, evaluate, logged_checks)
            if self.spec.weight_decay:
                self.backend.decay(1.0 - lr * self.spec.weight_decay)  # decoupled: theta <- (1 - lr wd) theta
            if self.anchor is not None:
                self.anchor.pull(lr * self.spec.anchor * self.anchor_scale)  # theta <- theta - lr lambda s (theta - theta_0)
        self._adapt_radius(values)
        result = StepResult(t, values, grad, lr, eps, [] if isinstance(update, DenseStep) else list(update), checks=checks)
        self._log(result, seed)
        return result

    def _finite(self, update, restore, t: int, lr: float):
        """The update, refused where it would make a weight NaN or infinite: the run stops naming the settings,
        before the step is logged (a resume or an export uses the steps before it)."""
        if isinstance(update, DenseStep):  # the values exist only per tensor, inside the rule: checked there
            rule = update.rule

            def checked(name, tmp, g):
                rule(name, tmp, g)
                if not bool(tmp.isfinite().all()):
                    raise NonFiniteStep(self._nonfinite_message(t, lr, name))

            return DenseStep(update.grad, checked)
        if all(math.isfinite(c) for _, c in update):
            return update
        if self.backend is not None:
            self.backend.apply(restore)
        raise NonFiniteStep(self._nonfinite_message(t, lr, "every tuned weight"))

    def _nonfinite_message(self, t: int, lr: float, where: str) -> str:
        s = self.spec
        if not math.isfinite(lr):
            settings = f"optim.lr ({s.lr!r}) and optim.schedule ({s.schedule})"
        elif s.optimizer == "adam":
            settings = f"optim.adam_eps ({s.adam_eps!r}), optim.betas ({s.betas!r}) and optim.lr ({s.lr!r})"
        else:
            settings = f"optim.lr ({s.lr!r}) and optim.{s.optimizer} settings"
        return (f"step {t + 1}: the update would make {where} NaN or infinite: check {settings}; the step was not "
                "logged")

    def _adapt_radius(self, values: Sequence[float]) -> None:
        """eps_{t+1} = eps_t * grow after a tie on a plateau, eps_t * shrink after a step whose sides differed.

        A step ties when at least half its directions scored alike. A tie better than the median of the last
        RECENT steps is a ceiling (e.g. every example of the batch right), not a plateau to escape: the radius
        then stays, because probing wider there only finds worse points and the steps follow the radius.
        """
        s = self.spec
        level = sum(values) / len(values)
        recent = sorted(self.recent)
        median = recent[len(recent) // 2] if recent else level
        at_ceiling = level > median if self.ascend else level < median
        if self.estimator.tied(values) >= 0.5:
            factor = 1.0 if at_ceiling else s.radius_grow
        else:
            factor = s.radius_shrink if s.radius_window is None else 1.0
        if s.radius_window is not None:
            factor *= self._trend_factor(level, self.ascend)
        self.radius = min(s.radius_max, max(1.0, self.radius * factor))
        self.recent.append(level)

    def _trend_factor(self, level: float, ascend: bool) -> float:
        """Every radius_window steps: grow when the last window's mean beat the one before, shrink otherwise.

        A success rule over windows (as ES step-size control does per step): the radius rises while wider
        steps still make progress and falls back once they overshoot; between windows it stays."""
        w = self.spec.radius_window
        self.window = (self.window + [level])[-2 * w:]
        if len(self.window) < 2 * w or self.step_count % w != w - 1:
            return 1.0
        before, last = sum(self.window[:w]) / w, sum(self.window[w:]) / w
        better = last > before if ascend else last < before
        return self.spec.radius_grow if better else self.spec.radius_shrink

    def _skip(self, t, step_seed, values, restore, lr, eps) -> StepResult:
        if self.backend is not None:
            self.backend.apply(restore)
        self.nonfinite_steps += 1
        self._nonfinite_run += 1
        warnings.warn(f"step {t}: non-finite objective values {values}; update skipped ({self.nonfinite_steps} so far)",
                      stacklevel=3)
        result = StepResult(t, values, [], lr, eps, skipped=True)
        self._log(result, step_seed)
        if self._nonfinite_run >= self.max_nonfinite:
            raise NonFiniteObjective(
                f"objective was NaN/inf on {self._nonfinite_run} consecutive steps (last values {values}); weights restored"
            )
        return result

    def record(self, r: StepResult) -> dict:
        """The trajectory line of step result `r`: the seeds and scalars a replay reproduces it from."""
        return {"step": r.step, "seed": derive_seed(self.spec.seed, "step", r.step), "eps": r.eps, "values": r.values,
                "checks": r.checks, "lr": r.lr, "grad": [[s, c] for s, c in r.grad], "skipped": r.skipped,
                **({"anchor_scale": self.anchor_scale} if self.anchor_scale != 1.0 else {})}

    def _log(self, r: StepResult, step_seed: int) -> None:
        self.step_count += 1
        if self.trajectory is not None:
            self.trajectory.append(self.record(r))
