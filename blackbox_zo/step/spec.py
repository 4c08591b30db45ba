"""The one description of a zeroth-order run: estimator, radius control, optimizer and schedule settings.

`MeZO`, `AskTell`, run configs (`optim:` section), replay and trajectory headers all build from this frozen
dataclass, so every setting is named, defaulted and validated in exactly one place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ESTIMATORS = ("spsa", "one_sided", "population", "pairwise")
OPTIMIZERS = ("sgd", "sign", "momentum", "adam", "conservative")  # CMA-ES is its own face: bz.CMA, CMASettings
RULES = ("normalized", "raw")
SHAPINGS = ("zscore", "rank", "none")
SCHEDULES = ("constant", "linear", "cosine")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule: constant, or linear/cosine decay to final_lr over total_steps, after a warm-up."""

    name: str = "constant"
    total_steps: int | None = None
    warmup_steps: int = 0
    final_lr: float = 0.0

    def __post_init__(self):
        _require(self.name in SCHEDULES, f"schedule.name: unknown schedule {self.name!r}; expected one of {SCHEDULES}")
        _require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
                 f"schedule.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        _require(_finite(self.final_lr) and self.final_lr >= 0,
                 f"schedule.final_lr must be a finite number >= 0, got {self.final_lr!r}")
        if self.name != "constant":
            _require(isinstance(self.total_steps, int) and self.total_steps > self.warmup_steps,
                     f"schedule {self.name!r} needs total_steps (int) > warmup_steps ({self.warmup_steps}), "
                     f"got {self.total_steps!r}")

    def lr(self, base: float, step: int) -> float:
        """The learning rate of `step` for a base rate `base`."""
        if step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps  # linear warm-up from base/warmup to base
        if self.name == "constant":
            return base
        frac = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        if self.name == "linear":
            return base + (self.final_lr - base) * frac
        return self.final_lr + 0.5 * (base - self.final_lr) * (1 + math.cos(math.pi * frac))  # cosine to final_lr


@dataclass(frozen=True)
class Spec:
    """Every setting of a step; defaults are the recipe that works out of the box (see the README's defaults)."""

    # the run
    seed: int = 0
    maximize: bool = False
    # the estimator: where the objective is evaluated and how values become a gradient estimate
    estimator: str = "spsa"  # spsa (MeZO Alg. 1/2), one_sided, population (antithetic ES), pairwise (preferences)
    eps: float = 1e-3  # perturbation radius at the start (sigma in ES terms)
    n: int = 1  # directions per step
    shaping: str = "zscore"  # population only: reward shaping across its 2n values
    # radius control: eps_t grows after a step where every direction tied (a plateau), shrinks otherwise.
    # None resolves to 2.0, or to 1.0 (a fixed radius) for 'pairwise': a split vote (+1 and -1) averages to 0,
    # the same value as two identical outputs, so a preference cannot tell a plateau from a disagreement
    radius_grow: float | None = None
    radius_shrink: float = 0.9
    radius_max: float = 16.0  # eps_t stays within [eps, radius_max * eps]; 64 x 1e-3 turns a 135M LM to gibberish
    # trend control (off by default): every radius_window steps compare the mean value of the last window with
    # the window before; grow eps_t on progress, shrink it otherwise (a smooth objective never ties, so the
    # tie rule alone only shrinks its radius). Steps that differ then keep their radius between windows.
    radius_window: int | None = None
    # the update
    rule: str = "normalized"  # normalized: coefficients / their RMS (scale-free); raw: MeZO's projected gradient
    optimizer: str = "sgd"
    lr: float = 3e-4  # normalized rule: step length per element at radius eps (scaled with eps_t / eps)
    momentum: float = 0.9
    window: int | None = None  # momentum: replay the last `window` seeds instead of a dense buffer
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    anchor: float = 0.0  # lambda: each step theta <- theta - lr * lambda * (theta - theta_0) (weights/anchor.py)
    clip_value: float | None = None
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self):
        if isinstance(self.schedule, dict):  # plain data from a config or a trajectory header
            object.__setattr__(self, "schedule", Schedule(**self.schedule))
        elif self.schedule is None or isinstance(self.schedule, str):
            object.__setattr__(self, "schedule", Schedule(self.schedule or "constant"))
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool), f"seed must be an int, got {self.seed!r}")
        _require(isinstance(self.maximize, bool), f"maximize must be True or False, got {self.maximize!r}")
        _require(self.estimator in ESTIMATORS, f"unknown estimator {self.estimator!r}; expected one of {list(ESTIMATORS)}")
        _require(_finite(self.eps) and self.eps > 0, f"eps must be a finite number > 0, got {self.eps!r}")
        _require(isinstance(self.n, int) and self.n >= 1, f"n (directions per step) must be an integer >= 1, got {self.n!r}")
        _require(self.shaping in SHAPINGS, f"unknown shaping {self.shaping!r}; expected one of {list(SHAPINGS)}")
        if self.radius_grow is None:
            object.__setattr__(self, "radius_grow", 1.0 if self.estimator == "pairwise" else 2.0)
        _require(_finite(self.radius_grow) and self.radius_grow >= 1, f"radius_grow must be >= 1, got {self.radius_grow!r}")
        _require(_finite(self.radius_shrink) and 0 < self.radius_shrink <= 1,
                 f"radius_shrink must be in (0, 1], got {self.radius_shrink!r}")
        _require(_finite(self.radius_max) and self.radius_max >= 1, f"radius_max must be >= 1, got {self.radius_max!r}")
        _require(self.radius_window is None or (isinstance(self.radius_window, int) and not isinstance(self.radius_window, bool)
                                                and self.radius_window >= 2),
                 f"radius_window must be an integer >= 2 or None, got {self.radius_window!r}")
        _require(self.rule in RULES, f"unknown rule {self.rule!r}; expected one of {list(RULES)}")
        _require(self.optimizer != "cma", "optimizer 'cma' is CMA-ES, not a seeded-direction step: use "
                 "bz.CMA(space, sigma0=..., popsize=...) (its settings: blackbox_zo.step.cma.CMASettings)")
        _require(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        _require(_finite(self.lr) and self.lr >= 0, f"lr must be a finite number >= 0, got {self.lr!r}")
        _require(_finite(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        _require(self.window is None or (isinstance(self.window, int) and self.window >= 1),
                 f"window must be a positive integer or None, got {self.window!r}")
        _require(len(self.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in self.betas),
                 f"betas must be two numbers in [0, 1), got {self.betas!r}")
        _require(_finite(self.adam_eps) and self.adam_eps > 0, f"adam_eps must be a finite number > 0, got {self.adam_eps!r}")
        _require(_finite(self.weight_decay) and 0 <= self.weight_decay < 1,
                 f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        _require(_finite(self.anchor) and self.anchor >= 0, f"anchor must be a finite number >= 0, got {self.anchor!r}")
        _require(self.clip_value is None or (_finite(self.clip_value) and self.clip_value > 0),
                 f"clip_value must be a number > 0 or None, got {self.clip_value!r}")
        _require(not (self.optimizer == "conservative" and self.estimator not in ("spsa", "one_sided")),
                 "the conservative optimizer needs a value estimate of f(theta): use estimator 'spsa' or 'one_sided'")

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def split(cls, kwargs: dict) -> tuple[Spec, dict]:
        """Build a Spec from the keys of `kwargs` it knows; return it with the other keys (e.g. ParamSpace's)."""
        known = cls.keys()
        return cls(**{k: v for k, v in kwargs.items() if k in known}), {k: v for k, v in kwargs.items() if k not in known}

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        """The inverse of to_dict; unknown keys are named."""
        unknown = sorted(set(data) - cls.keys())
        _require(not unknown, f"unknown spec key {unknown[0] if unknown else ''!r}; expected some of {sorted(cls.keys())}")
        return cls(**data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d
