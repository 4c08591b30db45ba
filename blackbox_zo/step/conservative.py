"""ZO-SGD-Cons (ZO-Bench) as a wrapper around a step: keep theta + u, theta - u or theta, whichever scores best.

It costs up to two more evaluations per step, and needs a value estimate of f(theta) from the estimator.
With `one_sided` that is f(theta) itself, so no kept point is worse than theta. With `spsa` it is the mean of
f(theta +- eps z), which exceeds f(theta) by ~eps^2 curvature near a minimum: a step can then be kept though
it is worse than theta (tests/test_zo_bench_features.py measures both).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from blackbox_zo.step.estimators import as_scalar


def conservative_wrapper(spec):
    """keep_best when the Spec asks for the conservative optimizer, else None."""
    return keep_best if spec.optimizer == "conservative" else None


def keep_best(backend, update, f0: float | None, maximize: bool, step: int, evaluate: Callable[[], Any] | None,
              logged_checks: Sequence[float] | None) -> list[float]:
    """Weights are at theta + u on entry; leave them at the best of theta + u, theta - u, theta; return the checks.

    `f0` is the estimator's value estimate of f(theta); `logged_checks` replace `evaluate` during a replay."""
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)  # noqa: E731
    checks: list[float] = []

    def measure(point_desc: str) -> float:
        if logged_checks is not None:
            return float(logged_checks[len(checks)])
        if evaluate is None:
            raise ValueError("the conservative optimizer re-evaluates the objective: use MeZO.step, not ask/tell")
        return as_scalar(evaluate(), f"step {step}, conservative check at {point_desc}")

    back = [(s, -c) for s, c in update]
    try:
        checks.append(measure("theta + u"))
        if better(checks[0], f0):
            return checks
        backend.apply([(s, 2 * c) for s, c in back])  # theta + u -> theta - u
        checks.append(measure("theta - u"))
        if better(checks[1], f0):
            return checks
        backend.apply(update)  # neither helps: back to theta
        return checks
    except BaseException:
        backend.apply(back if len(checks) == 0 else update)  # return to theta
        raise
