"""The settings of a CMA-ES run, torch-free so that a config is read and checked before torch is imported.

`bz.CMA(space, CMASettings(...))` or its keywords; a config says `optim: {optimizer: cma, eps, n, seed}` (read here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CMASettings:
    """Every setting of a CMA-ES run: bz.CMA's keywords, and what a config's `optim: {optimizer: cma}` section means.

    `sigma0` is in the tuned vector's units; `popsize` None takes 4 + floor(3 ln d); CMA-ES ranks values, so any
    monotone transform of the objective gives the same run.
    """

    sigma0: float = 0.5
    popsize: int | None = None
    seed: int = 0
    maximize: bool = False

    def __post_init__(self):
        if isinstance(self.sigma0, bool) or not (isinstance(self.sigma0, (int, float)) and math.isfinite(self.sigma0)
                                                 and self.sigma0 > 0):
            raise ValueError(f"sigma0 must be a finite number > 0, got {self.sigma0!r}")
        if self.popsize is not None and (isinstance(self.popsize, bool) or not isinstance(self.popsize, int)
                                         or self.popsize < 2):
            raise ValueError(f"popsize must be an integer >= 2 (or None for 4 + 3 ln d), got {self.popsize!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.maximize, bool):
            raise ValueError(f"maximize must be True or False, got {self.maximize!r}")

    @classmethod
    def from_optim(cls, optim: dict) -> CMASettings:
        """A config's `optim` section with optimizer 'cma': eps is sigma0, n the population (1: 4 + 3 ln d)."""
        n = optim.get("n", 1)
        return cls(sigma0=optim.get("eps", OPTIM_EPS), popsize=None if n == 1 else n, seed=optim.get("seed", 0),
                   maximize=optim.get("maximize", False))

    def to_optim(self) -> dict:
        """The `optim` section a config writes for these settings (read back by from_optim)."""
        return {"optimizer": "cma", "eps": self.sigma0, "n": self.popsize or 1, "seed": self.seed,
                "maximize": self.maximize}


OPTIM_EPS = 1e-3  # a config's optim.eps when omitted (Spec's default), read as sigma0
