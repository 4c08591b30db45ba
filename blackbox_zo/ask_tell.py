"""Ask/tell: for callers that evaluate candidates remotely or asynchronously.

`ask()` returns candidates (a seed and a scale each: evaluate f at theta + scale * z(seed)); `tell(values)`
turns the scalars into an update, logs it, applies it to the attached backend (if any) and returns it
as (seed, coefficient) pairs, so remote copies of theta apply the same update from seeds alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .engine import NonFiniteObjective, as_scalar
from .estimators import make_estimator
from .noise import derive_seed
from .optim import make_optimizer


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


class AskTell:
    """Ask for candidates, tell their values; the same estimators and coefficient optimizers as MeZO."""

    def __init__(self, backend=None, lr: float = 1e-6, eps: float = 1e-3, seed: int = 0, maximize: bool = False,
                 estimator: str = "spsa", n: int = 1, optimizer: str = "sgd", **opt_kwargs):
        self.estimator = make_estimator(estimator, eps=eps, n=n)
        self.optimizer = make_optimizer(optimizer, lr, **opt_kwargs)
        if self.optimizer.dense is not None or self.optimizer.conservative:
            raise ValueError(f"optimizer {optimizer!r} needs in-process weights; use MeZO.step for it")
        self.backend, self.seed, self.maximize = backend, int(seed), bool(maximize)
        self.step_count = 0
        self._pending: list[Candidate] | None = None

    def ask(self) -> list[Candidate]:
        if self._pending is not None:
            raise RuntimeError("ask() called twice without tell(): tell the values of the pending candidates first")
        step_seed = derive_seed(self.seed, "step", self.step_count)
        self._pending = [Candidate(tuple(p)) for p in self.estimator.points(step_seed)]
        return self._pending

    def tell(self, values: Sequence[float]) -> list[tuple[int, float]]:
        """Returns the update u: theta <- theta + sum u_i z(seed_i) (already applied to the attached backend)."""
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if len(values) != len(self._pending):
            raise ValueError(f"tell() got {len(values)} values for {len(self._pending)} candidates")
        vals = [as_scalar(v, f"candidate {i}") for i, v in enumerate(values)]
        t = self.step_count
        self._pending = None
        self.step_count += 1
        if not all(math.isfinite(v) for v in vals):
            raise NonFiniteObjective(f"step {t}: non-finite values {vals}; no update made")
        grad = self.estimator.gradient(derive_seed(self.seed, "step", t), vals)
        loss_grad = [(s, -c) for s, c in grad] if self.maximize else grad
        update = self.optimizer.updates(loss_grad, t)
        if self.backend is not None:
            self.backend.apply(update)
        return update
