"""Zeroth-order gradient estimators: where to evaluate, and how values become an implicit gradient.

An estimator never touches tensors. It names evaluation points as offsets from theta (lists of
(seed, scale), meaning theta + sum scale * z(seed)) and turns the measured scalars into a gradient
estimate of the objective, as (seed, coefficient) pairs: g = sum_i c_i z(seed_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .noise import derive_seed

Point = list[tuple[int, float]]  # offset from theta: sum of scale * z(seed)
Pairs = list[tuple[int, float]]


def direction_seeds(step_seed: int, n: int) -> list[int]:
    """The n direction seeds of one step, derived from the step seed alone."""
    return [derive_seed(step_seed, "direction", i) for i in range(n)]


@dataclass
class SPSA:
    """Two-sided SPSA (MeZO Alg. 1), n-SPSA for n > 1 (Alg. 2): g = mean_i (f(+eps z_i) - f(-eps z_i)) / (2 eps) z_i."""

    eps: float = 1e-3
    n: int = 1
    name: str = "spsa"

    def points(self, step_seed: int) -> list[Point]:
        return [[(s, sign * self.eps)] for s in direction_seeds(step_seed, self.n) for sign in (1.0, -1.0)]

    def reduce(self, results: Sequence[Any]) -> list[float]:
        return [float(r) for r in results]

    def gradient(self, step_seed: int, values: Sequence[float]) -> Pairs:
        seeds = direction_seeds(step_seed, self.n)
        # projected gradient of direction i: (f_+ - f_-) / (2 eps), averaged over the n directions
        return [(s, (values[2 * i] - values[2 * i + 1]) / (2 * self.eps * self.n)) for i, s in enumerate(seeds)]


@dataclass
class OneSidedSPSA:
    """One-sided SPSA: g = mean_i (f(theta + eps z_i) - f(theta)) / eps * z_i; n + 1 evaluations."""

    eps: float = 1e-3
    n: int = 1
    name: str = "one_sided"

    def points(self, step_seed: int) -> list[Point]:
        return [[]] + [[(s, self.eps)] for s in direction_seeds(step_seed, self.n)]

    def reduce(self, results: Sequence[Any]) -> list[float]:
        return [float(r) for r in results]

    def gradient(self, step_seed: int, values: Sequence[float]) -> Pairs:
        f0 = values[0]
        return [(s, (values[1 + i] - f0) / (self.eps * self.n)) for i, s in enumerate(direction_seeds(step_seed, self.n))]


def shape_rewards(values: Sequence[float], shaping: str) -> list[float]:
    """Reward shaping for populations: 'zscore' (f - mean) / std, 'rank' centred ranks in [-0.5, 0.5], 'none'."""
    m = len(values)
    if shaping == "none":
        return list(values)
    if shaping == "zscore":
        mean = sum(values) / m
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / m)
        return [(v - mean) / std if std > 0 else 0.0 for v in values]
    if shaping == "rank":
        order = sorted(range(m), key=lambda i: values[i])
        ranks = [0.0] * m
        for r, i in enumerate(order):
            ranks[i] = r / (m - 1) - 0.5 if m > 1 else 0.0
        return ranks
    raise ValueError(f"unknown reward shaping {shaping!r}; expected 'zscore', 'rank' or 'none'")


@dataclass
class Population:
    """Antithetic ES population (ES at scale): n pairs theta +- sigma z_i, shaped rewards r, g = sum_i (r_i+ - r_i-) z_i / (2 n sigma)."""

    eps: float = 1e-3  # sigma
    n: int = 8  # antithetic pairs, 2n evaluations
    shaping: str = "zscore"
    name: str = "population"

    def __post_init__(self):
        shape_rewards([0.0, 1.0], self.shaping)  # validates the name

    def points(self, step_seed: int) -> list[Point]:
        return SPSA(self.eps, self.n).points(step_seed)

    def reduce(self, results: Sequence[Any]) -> list[float]:
        return [float(r) for r in results]

    def gradient(self, step_seed: int, values: Sequence[float]) -> Pairs:
        r = shape_rewards(values, self.shaping)
        seeds = direction_seeds(step_seed, self.n)
        return [(s, (r[2 * i] - r[2 * i + 1]) / (2 * self.n * self.eps)) for i, s in enumerate(seeds)]


@dataclass
class Pairwise:
    """Preference estimator: only which of theta + eps z / theta - eps z is better; g = mean_i pref_i * z_i.

    `compare(out_plus, out_minus)` returns a preference in [-1, 1] (+1: the plus side is better, 0: tie);
    the objective callable returns outputs (texts, ...) rather than numbers. lr is a step length per |z|.
    """

    compare: Callable[[Any, Any], float]
    eps: float = 1e-3
    n: int = 1
    name: str = "pairwise"

    def points(self, step_seed: int) -> list[Point]:
        return SPSA(self.eps, self.n).points(step_seed)

    def reduce(self, results: Sequence[Any]) -> list[float]:
        prefs = []
        for i in range(self.n):
            p = float(self.compare(results[2 * i], results[2 * i + 1]))
            if not -1.0 <= p <= 1.0:
                raise ValueError(f"pairwise compare must return a preference in [-1, 1], got {p}")
            prefs.append(p)
        return prefs

    def gradient(self, step_seed: int, values: Sequence[float]) -> Pairs:
        return [(s, values[i] / self.n) for i, s in enumerate(direction_seeds(step_seed, self.n))]


ESTIMATORS = {"spsa": SPSA, "one_sided": OneSidedSPSA, "population": Population, "pairwise": Pairwise}


def make_estimator(name: str, **kwargs) -> Any:
    """Build an estimator by name, rejecting unknown names and bad settings with a clear message."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
    eps = kwargs.get("eps", 1e-3)
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    n = kwargs.get("n", 1)
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n (directions per step) must be an integer >= 1, got {n!r}")
    return ESTIMATORS[name](**kwargs)
