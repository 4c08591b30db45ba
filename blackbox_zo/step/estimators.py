"""Zeroth-order gradient estimators: where to evaluate, how results become values, and values a gradient.

An estimator never touches tensors. It names evaluation points as offsets from theta (lists of
(seed, scale), meaning theta + sum scale * z(seed)) at the step's radius eps, and turns the measured
values into a gradient estimate of the objective as (seed, coefficient) pairs: g = sum_i c_i z(seed_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from blackbox_zo.errors import ObjectiveError
from blackbox_zo.weights.noise import derive_seed

Point = list[tuple[int, float]]  # offset from theta: sum of scale * z(seed)
Pairs = list[tuple[int, float]]


def direction_seeds(step_seed: int, n: int) -> list[int]:
    """The n direction seeds of one step, derived from the step seed alone."""
    return [derive_seed(step_seed, "direction", i) for i in range(n)]


def as_scalar(value: Any, where: str) -> float:
    """A Python float from a float, int, numpy scalar or one-element tensor; otherwise a clear error."""
    if hasattr(value, "numel") and hasattr(value, "item"):  # a torch tensor, without importing torch here
        if value.numel() != 1:
            raise ObjectiveError(f"objective returned a tensor of shape {tuple(value.shape)} at {where}; expected one number")
        return float(value.item())
    if isinstance(value, bool) or not hasattr(value, "__float__") or isinstance(value, (str, bytes)):
        raise ObjectiveError(f"objective returned {type(value).__name__} ({value!r:.60}) at {where}; expected a number")
    return float(value)


def describe_point(point: Sequence[tuple[int, float]]) -> str:
    return "theta" if not point else " ".join(f"theta{scale:+g}*z(seed={seed})" for seed, scale in point)


def antithetic_points(step_seed: int, n: int, eps: float) -> list[Point]:
    """theta + eps z_i, theta - eps z_i for each of the n directions, in that order."""
    return [[(s, sign * eps)] for s in direction_seeds(step_seed, n) for sign in (1.0, -1.0)]


def shape_rewards(values: Sequence[float], shaping: str) -> list[float]:
    """Reward shaping for populations: 'zscore' (f - mean) / std, 'rank' centred ranks in [-0.5, 0.5], 'none'."""
    m = len(values)
    if shaping == "zscore":
        mean = sum(values) / m
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / m)
        return [(v - mean) / std if std > 0 else 0.0 for v in values]
    if shaping == "rank":  # ties share their mean rank, so a tie still contributes nothing
        order = sorted(range(m), key=lambda i: values[i])
        ranks = [0.0] * m
        i = 0
        while i < m:
            j = i
            while j + 1 < m and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                ranks[order[k]] = ((i + j) / 2) / (m - 1) - 0.5 if m > 1 else 0.0
            i = j + 1
        return ranks
    return list(values)


def scalars(results: Sequence[Any], points: Sequence[Point], step: int) -> list[float]:
    where = [f": {describe_point(p)}" for p in points] or [""] * len(results)
    return [as_scalar(r, f"step {step}, point {i}{where[i]}") for i, r in enumerate(results)]


@dataclass(frozen=True)
class SPSA:
    """Two-sided SPSA (MeZO Alg. 1), n-SPSA for n > 1 (Alg. 2): g = mean_i (f(+eps z_i) - f(-eps z_i)) / (2 eps) z_i."""

    ascends = False  # `maximize` alone decides the direction

    n: int = 1

    def points(self, step_seed: int, eps: float) -> list[Point]:
        return antithetic_points(step_seed, self.n, eps)

    def reduce(self, results: Sequence[Any], points: Sequence[Point] = (), step: int = 0) -> list[float]:
        return scalars(results, points, step)

    def gradient(self, step_seed: int, values: Sequence[float], eps: float) -> Pairs:
        # projected gradient of direction i: (f_+ - f_-) / (2 eps), averaged over the n directions
        seeds = direction_seeds(step_seed, self.n)
        return [(s, (values[2 * i] - values[2 * i + 1]) / (2 * eps * self.n)) for i, s in enumerate(seeds)]

    def value_estimate(self, values: Sequence[float]) -> float | None:
        return sum(values) / len(values)  # mean of f(theta +- eps z) = f(theta) + O(eps^2)

    def tied(self, values: Sequence[float]) -> float:
        """Fraction of directions whose two sides scored exactly alike (no information at this radius)."""
        return sum(values[2 * i] == values[2 * i + 1] for i in range(self.n)) / self.n

    def value_count(self) -> int:
        """How many values a step logs: one per point."""
        return 2 * self.n


@dataclass(frozen=True)
class OneSidedSPSA:
    """One-sided SPSA: g = mean_i (f(theta + eps z_i) - f(theta)) / eps * z_i; n + 1 evaluations."""

    ascends = False  # `maximize` alone decides the direction

    n: int = 1

    def points(self, step_seed: int, eps: float) -> list[Point]:
        return [[]] + [[(s, eps)] for s in direction_seeds(step_seed, self.n)]

    def reduce(self, results: Sequence[Any], points: Sequence[Point] = (), step: int = 0) -> list[float]:
        return scalars(results, points, step)

    def gradient(self, step_seed: int, values: Sequence[float], eps: float) -> Pairs:
        f0 = values[0]
        return [(s, (values[1 + i] - f0) / (eps * self.n)) for i, s in enumerate(direction_seeds(step_seed, self.n))]

    def value_estimate(self, values: Sequence[float]) -> float | None:
        return values[0]  # f(theta) itself

    def tied(self, values: Sequence[float]) -> float:
        return sum(v == values[0] for v in values[1:]) / self.n

    def value_count(self) -> int:
        return self.n + 1


@dataclass(frozen=True)
class Population:
    """Antithetic ES population (ES at scale): shaped rewards r, g = sum_i (r_i+ - r_i-) z_i / (2 n eps)."""

    ascends = False  # `maximize` alone decides the direction

    n: int = 8
    shaping: str = "zscore"

    def points(self, step_seed: int, eps: float) -> list[Point]:
        return antithetic_points(step_seed, self.n, eps)

    def reduce(self, results: Sequence[Any], points: Sequence[Point] = (), step: int = 0) -> list[float]:
        return scalars(results, points, step)

    def gradient(self, step_seed: int, values: Sequence[float], eps: float) -> Pairs:
        r = shape_rewards(values, self.shaping)
        return [(s, (r[2 * i] - r[2 * i + 1]) / (2 * self.n * eps)) for i, s in enumerate(direction_seeds(step_seed, self.n))]

    def value_estimate(self, values: Sequence[float]) -> float | None:
        return None  # shaped rewards carry no value scale

    def tied(self, values: Sequence[float]) -> float:
        return SPSA(self.n).tied(values)

    def value_count(self) -> int:
        return 2 * self.n


@dataclass(frozen=True)
class Pairwise:
    """Preferences only: which of theta + eps z / theta - eps z is better; g = mean_i pref_i * z_i.

    `compare(out_plus, out_minus)` returns a preference in [-1, 1] (+1: the plus side is better, 0: tie); the
    closure returns outputs (texts, ...) rather than numbers. A preference is always to be maximised.
    """

    compare: Callable[[Any, Any], float]
    n: int = 1
    ascends = True  # a preference is always to be maximised, whatever `maximize` says

    def points(self, step_seed: int, eps: float) -> list[Point]:
        return antithetic_points(step_seed, self.n, eps)

    def reduce(self, results: Sequence[Any], points: Sequence[Point] = (), step: int = 0) -> list[float]:
        return [self.preference(results[2 * i], results[2 * i + 1], step, i) for i in range(self.n)]

    def preference(self, out_plus: Any, out_minus: Any, step: int, direction: int) -> float:
        """compare(out_plus, out_minus) of one direction, checked to be a number in [-1, 1]."""
        try:
            p = as_scalar(self.compare(out_plus, out_minus), f"step {step}, compare of direction {direction}")
        except ObjectiveError:
            raise
        except Exception as e:
            raise ObjectiveError(f"compare raised {type(e).__name__}: {e} (step {step}, direction {direction})") from e
        if not -1.0 <= p <= 1.0:
            raise ObjectiveError(
                f"pairwise compare must return a preference in [-1, 1], got {p} (step {step}, direction {direction})")
        return p

    def gradient(self, step_seed: int, values: Sequence[float], eps: float) -> Pairs:
        return [(s, values[i] / self.n) for i, s in enumerate(direction_seeds(step_seed, self.n))]

    def value_estimate(self, values: Sequence[float]) -> float | None:
        return None

    def tied(self, values: Sequence[float]) -> float:
        return sum(v == 0.0 for v in values) / self.n

    def value_count(self) -> int:
        """One preference per direction."""
        return self.n


def make_estimator(spec, compare: Callable[[Any, Any], float] | None = None):
    """The estimator a Spec names; `compare` is required by, and only by, 'pairwise'."""
    if (spec.estimator == "pairwise") != (compare is not None):
        raise ValueError("estimator 'pairwise' needs compare=callable(out_plus, out_minus) -> preference in [-1, 1]"
                         if compare is None else f"compare= is only used by estimator 'pairwise', not {spec.estimator!r}")
    if spec.estimator == "pairwise" and not callable(compare):
        raise ValueError(f"compare must be callable(out_plus, out_minus) -> preference in [-1, 1], got {type(compare).__name__}")
    build = {
        "spsa": lambda: SPSA(spec.n),
        "one_sided": lambda: OneSidedSPSA(spec.n),
        "population": lambda: Population(spec.n, spec.shaping),
        "pairwise": lambda: Pairwise(compare, spec.n),
    }
    return build[spec.estimator]()
