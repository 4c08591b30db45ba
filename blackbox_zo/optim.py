"""Optimizers over implicit gradients, in the Optax spirit: small transforms of (seed, coefficient) pairs.

Coefficient transforms (scale, sign, clip, windowed momentum) cost O(1) per direction and keep no
per-parameter state. Dense rules (momentum, Adam) keep fp32 buffers the size of the tuned tensors and
apply themselves through ParamSpace.map_dense; their memory is stated in `memory_per_element`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch

Pairs = list[tuple[int, float]]


# --- schedules: step -> learning rate --------------------------------------------------------------
def make_schedule(lr: float, spec: dict | str | None = None) -> Callable[[int], float]:
    """lr schedule from plain data: None/'constant', or {'name': 'linear'|'cosine'|'constant', 'total_steps', 'warmup_steps', 'final_lr'}."""
    if not (isinstance(lr, (int, float)) and lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "constant"})
    name = spec.pop("name", "constant")
    warmup = int(spec.pop("warmup_steps", 0))
    total = spec.pop("total_steps", None)
    final = float(spec.pop("final_lr", 0.0))
    if spec:
        raise ValueError(f"unknown schedule keys {sorted(spec)}; expected total_steps, warmup_steps, final_lr")
    if name not in ("constant", "linear", "cosine"):
        raise ValueError(f"unknown schedule {name!r}; expected 'constant', 'linear' or 'cosine'")
    if name != "constant" and not (isinstance(total, int) and total > warmup):
        raise ValueError(f"schedule {name!r} needs total_steps (int) > warmup_steps ({warmup}), got {total!r}")

    def schedule(step: int) -> float:
        if step < warmup:  # linear warm-up from lr/warmup to lr
            return lr * (step + 1) / warmup
        if name == "constant":
            return lr
        frac = min(1.0, (step - warmup) / (total - warmup))
        if name == "linear":
            return lr + (final - lr) * frac
        return final + 0.5 * (lr - final) * (1 + math.cos(math.pi * frac))  # cosine decay to final_lr

    return schedule


# --- coefficient transforms ------------------------------------------------------------------------
class Transform(NamedTuple):
    init: Callable[[], Any]
    update: Callable[[Pairs, Any, int], tuple[Pairs, Any]]


def scale_by_lr(schedule: Callable[[int], float]) -> Transform:
    """u_i = -lr_t * c_i: a descent step on the loss gradient."""
    return Transform(lambda: None, lambda g, s, t: ([(k, -schedule(t) * c) for k, c in g], s))


def sign() -> Transform:
    """ZO-SGD-Sign: keep only the sign of each projected gradient."""
    return Transform(lambda: None, lambda g, s, t: ([(k, math.copysign(1.0, c) if c else 0.0) for k, c in g], s))


def clip(max_abs: float) -> Transform:
    """Clip each projected gradient to [-max_abs, max_abs] (guards against outlier differences)."""
    return Transform(lambda: None, lambda g, s, t: ([(k, max(-max_abs, min(max_abs, c))) for k, c in g], s))


def momentum_window(beta: float, window: int) -> Transform:
    """ZO-SGD-MMT without dense state: m_t = sum_{k > t - window} beta^(t-k) g_k, replayed from seeds.

    Memory: `window` (seed, coeff) pairs; cost: up to `window` noise passes per step. Truncation drops
    terms weighted beta^window or less.
    """

    def update(g: Pairs, state: deque, t: int):
        state.append(list(g))
        out: Pairs = []
        for age, past in enumerate(reversed(state)):
            out.extend((k, (beta**age) * c) for k, c in past)
        return out, state

    return Transform(lambda: deque(maxlen=window), update)


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right, like optax.chain."""

    def init():
        return [t.init() for t in transforms]

    def update(g, states, step):
        new_states = []
        for t, s in zip(transforms, states):
            g, s = t.update(g, s, step)
            new_states.append(s)
        return g, new_states

    return Transform(init, update)


# --- dense rules ------------------------------------------------------------------------------------
@dataclass
class DenseMomentum:
    """ZO-SGD-MMT with a dense buffer: m <- beta m + g; theta <- theta - lr m. Memory: 4 bytes per tuned element."""

    beta: float
    memory_per_element: int = 4
    buffers: dict = field(default_factory=dict)

    def apply(self, space, grad: Pairs, lr: float) -> None:
        def rule(name: str, theta: torch.Tensor, g: torch.Tensor) -> None:
            m = self.buffers.setdefault(name, torch.zeros_like(g))
            m.mul_(self.beta).add_(g)
            theta.add_(m, alpha=-lr)

        space.map_dense(grad, rule)


@dataclass
class DenseAdam:
    """ZO-Adam (ZO-Bench): Adam moments of the ZO gradient. Memory: 8 bytes per tuned element."""

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    memory_per_element: int = 8
    t: int = 0
    buffers: dict = field(default_factory=dict)

    def apply(self, space, grad: Pairs, lr: float) -> None:
        self.t += 1
        bc1, bc2 = 1 - self.b1**self.t, 1 - self.b2**self.t

        def rule(name: str, theta: torch.Tensor, g: torch.Tensor) -> None:
            m, v = self.buffers.setdefault(name, (torch.zeros_like(g), torch.zeros_like(g)))
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)  # m <- b1 m + (1 - b1) g
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)  # v <- b2 v + (1 - b2) g^2
            denom = (v / bc2).sqrt_().add_(self.eps)
            theta.addcdiv_(m, denom, value=-lr / bc1)  # theta <- theta - lr m_hat / (sqrt(v_hat) + eps)

        space.map_dense(grad, rule)


# --- the optimizer as plain data --------------------------------------------------------------------
OPTIMIZERS = ("sgd", "sign", "momentum", "adam", "conservative")


@dataclass
class Optimizer:
    """What to do with a loss-gradient estimate: coefficient transforms, or a dense rule, plus decay."""

    spec: dict
    schedule: Callable[[int], float]
    transform: Transform | None
    dense: Any = None
    weight_decay: float = 0.0
    conservative: bool = False
    state: Any = None

    def __post_init__(self):
        self.state = self.transform.init() if self.transform else None

    def updates(self, grad: Pairs, step: int) -> Pairs:
        """Coefficients u with theta <- theta + sum u_i z_i (coefficient transforms only)."""
        out, self.state = self.transform.update(grad, self.state, step)
        return out


def make_optimizer(
    name: str = "sgd",
    lr: float = 1e-6,
    schedule: dict | str | None = None,
    momentum: float = 0.9,
    window: int | None = None,
    betas: Sequence[float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_value: float | None = None,
) -> Optimizer:
    """Build an optimizer from plain data (what a config file or trajectory header holds)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if not 0.0 <= weight_decay < 1.0:
        raise ValueError(f"weight_decay must be in [0, 1), got {weight_decay}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if window is not None and not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window must be a positive integer or None, got {window!r}")
    sched = make_schedule(lr, schedule)
    spec = {
        "name": name, "lr": lr, "schedule": schedule, "momentum": momentum, "window": window,
        "betas": list(betas), "adam_eps": adam_eps, "weight_decay": weight_decay, "clip_value": clip_value,
    }
    pre = [clip(clip_value)] if clip_value else []
    if name == "adam":
        return Optimizer(spec, sched, None, DenseAdam(betas[0], betas[1], adam_eps), weight_decay)
    if name == "momentum" and window is None:
        return Optimizer(spec, sched, None, DenseMomentum(momentum), weight_decay)
    if name == "momentum":
        return Optimizer(spec, sched, chain(*pre, momentum_window(momentum, window), scale_by_lr(sched)), None, weight_decay)
    if name == "sign":
        return Optimizer(spec, sched, chain(*pre, sign(), scale_by_lr(sched)), None, weight_decay)
    return Optimizer(spec, sched, chain(*pre, scale_by_lr(sched)), None, weight_decay, conservative=name == "conservative")
