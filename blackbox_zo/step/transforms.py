"""Optimizers over implicit gradients, in the Optax spirit: a chain of small (init, update) transforms.

A transform maps (seed, coefficient) pairs to pairs and costs O(1) per direction (normalize, sign, clip,
windowed momentum, scale by lr). Dense rules (momentum, Adam) end a chain: like Optax's `params` argument,
they receive the backend through the step context and return a `DenseStep` that updates it in place; their
memory (4 or 8 bytes per tuned element) is stated on the class.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

Pairs = list[tuple[int, float]]


class StepContext(NamedTuple):
    """What a transform may read besides the gradient: the step, its learning rate and radius factor eps_t / eps."""

    step: int
    lr: float
    radius: float = 1.0


class Transform(NamedTuple):
    init: Callable[[], Any]
    update: Callable[[Pairs, Any, StepContext], tuple[Any, Any]]  # (pairs, state, ctx) -> (pairs | DenseStep, state)
    name: str | None = None  # the function of this module that built it (None: hand-made, so no log can name it)
    args: dict | None = None  # its arguments, by name: a trajectory logs both, and replay rebuilds it from them


FACTORIES: dict[str, Callable[..., Transform]] = {}  # name -> the function that builds it (rebuild() looks here)


def named(factory: Callable[..., Transform]) -> Callable[..., Transform]:
    """Tag each transform a factory builds with the factory's name and arguments, so a trajectory can name it."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs) -> Transform:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return factory(*args, **kwargs)._replace(name=factory.__name__, args=dict(bound.arguments))

    FACTORIES[factory.__name__] = build
    return build


def describe(transform: Transform) -> dict:
    """{"name": ..., **arguments} of a transform built here (a chain lists its parts): what a trajectory logs."""
    if transform.name is None:
        raise ValueError("a hand-made Transform cannot be logged for replay: build it from the functions of "
                         f"blackbox_zo.step.transforms ({', '.join(sorted(FACTORIES))})")
    args = transform.args or {}
    if transform.name == "chain":
        return {"name": "chain", "transforms": [describe(t) for t in args["transforms"]]}
    return {"name": transform.name, **args}


def rebuild(description: dict) -> Transform:
    """The transform a trajectory's description names (the inverse of describe)."""
    args = {k: v for k, v in description.items() if k != "name"}
    name = description.get("name")
    if name == "chain":
        return chain(*(rebuild(d) for d in args["transforms"]))
    if name not in FACTORIES:
        raise ValueError(f"unknown transform {name!r}; expected one of {sorted(FACTORIES)}")
    return FACTORIES[name](**args)


def needs_dense(transform: Transform) -> bool:
    """True when the transform keeps per-element state and so needs in-process tensors (DenseBackend.map_dense)."""
    if transform.name == "chain":
        return any(needs_dense(t) for t in transform.args["transforms"])
    return transform.name in ("dense_momentum", "dense_adam")


@dataclass
class DenseStep:
    """An update that needs the tensors: `apply(backend)` runs a per-element rule through backend.map_dense."""

    grad: Pairs
    rule: Callable[[str, torch.Tensor, torch.Tensor], None]

    def apply(self, backend) -> None:
        backend.map_dense(self.grad, self.rule)


# --- coefficient transforms ------------------------------------------------------------------------
def stateless(fn: Callable[[Pairs, StepContext], Pairs]) -> Transform:
    return Transform(lambda: None, lambda g, s, ctx: (fn(g, ctx), s))


@named
def normalize() -> Transform:
    """Scale-free step: c_i <- c_i / (n * rms(c)); one direction gives sign(c), any objective scale the same step."""

    def fn(g: Pairs, ctx: StepContext) -> Pairs:
        rms = math.sqrt(sum(c * c for _, c in g) / len(g)) if g else 0.0
        return [(k, c / (rms * len(g)) if rms > 0 else 0.0) for k, c in g]  # sum_i c_i z_i has per-element std 1/sqrt(n)

    return stateless(fn)


@named
def follow_radius() -> Transform:
    """c_i <- c_i * eps_t / eps: a scale-free step keeps its ratio to the radius as the radius adapts."""
    return stateless(lambda g, ctx: [(k, c * ctx.radius) for k, c in g])


@named
def sign() -> Transform:
    """ZO-SGD-Sign: keep only the sign of each projected gradient."""
    return stateless(lambda g, ctx: [(k, math.copysign(1.0, c) if c else 0.0) for k, c in g])


@named
def clip(max_abs: float) -> Transform:
    """Clip each projected gradient to [-max_abs, max_abs] (guards against outlier differences)."""
    return stateless(lambda g, ctx: [(k, max(-max_abs, min(max_abs, c))) for k, c in g])


@named
def scale_by_lr() -> Transform:
    """u_i = -lr_t * c_i: a descent step on the loss gradient."""
    return stateless(lambda g, ctx: [(k, -ctx.lr * c) for k, c in g])


@named
def momentum_window(beta: float, window: int) -> Transform:
    """ZO-SGD-MMT without dense state: m_t = sum_{k > t - window} beta^(t-k) g_k, replayed from seeds.

    Memory: `window` (seed, coeff) pairs; cost: up to `window` noise passes per step. Truncation drops
    terms weighted beta^window or less.
    """

    def update(g: Pairs, state: deque, ctx: StepContext):
        state.append(list(g))
        return [(k, (beta**age) * c) for age, past in enumerate(reversed(state)) for k, c in past], state

    return Transform(lambda: deque(maxlen=window), update)


# --- dense rules: the end of a chain ---------------------------------------------------------------
@named
def dense_momentum(beta: float) -> Transform:
    """ZO-SGD-MMT with a dense buffer: m <- beta m + g; theta <- theta - lr m. Memory: 4 bytes per tuned element."""

    def update(g: Pairs, buffers: dict, ctx: StepContext):
        def rule(name: str, theta: torch.Tensor, grad: torch.Tensor) -> None:
            m = buffers.setdefault(name, torch.zeros_like(grad))
            m.mul_(beta).add_(grad)  # m <- beta m + g
            theta.add_(m, alpha=-ctx.lr)  # theta <- theta - lr m

        return DenseStep(g, rule), buffers

    return Transform(dict, update)


@named
def dense_adam(b1: float, b2: float, eps: float) -> Transform:
    """ZO-Adam (ZO-Bench): Adam moments of the ZO gradient. Memory: 8 bytes per tuned element."""

    def update(g: Pairs, state: dict, ctx: StepContext):
        state["t"] = t = state.get("t", 0) + 1
        bc1, bc2 = 1 - b1**t, 1 - b2**t

        def rule(name: str, theta: torch.Tensor, grad: torch.Tensor) -> None:
            m, v = state.setdefault(name, (torch.zeros_like(grad), torch.zeros_like(grad)))
            m.mul_(b1).add_(grad, alpha=1 - b1)  # m <- b1 m + (1 - b1) g
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)  # v <- b2 v + (1 - b2) g^2
            denom = (v / bc2).sqrt_().add_(eps)
            theta.addcdiv_(m, denom, value=-ctx.lr / bc1)  # theta <- theta - lr m_hat / (sqrt(v_hat) + eps)

        return DenseStep(g, rule), state

    return Transform(dict, update)


@named
def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right, like optax.chain."""

    def init():
        return [t.init() for t in transforms]

    def update(g, states, ctx):
        new_states = []
        for t, s in zip(transforms, states):
            g, s = t.update(g, s, ctx)
            new_states.append(s)
        return g, new_states

    return Transform(init, update)


DENSE_BYTES_PER_ELEMENT = {"momentum": 4, "adam": 8}


def make_optimizer(spec) -> Transform:
    """The transform chain a Spec names: [clip] [normalize, follow_radius] then sgd | sign | momentum | adam.

    `conservative` is plain sgd here; the engine wraps its step with the keep-the-best check.
    """
    head = [clip(spec.clip_value)] if spec.clip_value else []
    if spec.rule == "normalized":
        head += [normalize(), follow_radius()]
    if spec.optimizer == "adam":
        return chain(*head, dense_adam(spec.betas[0], spec.betas[1], spec.adam_eps))
    if spec.optimizer == "momentum" and spec.window is None:
        return chain(*head, dense_momentum(spec.momentum))
    if spec.optimizer == "momentum":
        return chain(*head, momentum_window(spec.momentum, spec.window), scale_by_lr())
    if spec.optimizer == "sign":
        return chain(*head, sign(), scale_by_lr())
    return chain(*head, scale_by_lr())
