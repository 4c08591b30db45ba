"""The contract between the engine and whatever holds the tuned tensors (torch in-process, vLLM workers).

Only seeds and scalars cross it: the engine never sees a tensor, so a backend may live in another
process or on another machine. Directions come from `blackbox_zo.weights.noise` keyed by canonical names.
"""

from __future__ import annotations

from typing import Callable, ContextManager, Protocol, Sequence, runtime_checkable

Pairs = Sequence[tuple[int, float]]  # implicit vector: sum_i c_i * z(seed_i)
# how a backend evaluates a step's points: at use time in one batched forward, by moving the weights, or the
# first where every tuned tensor's use can be hooked (ParamSpace(evaluate=...), config space.evaluate)
EVALUATE = ("auto", "batched", "inplace")


@runtime_checkable
class Backend(Protocol):
    noise_kind: str  # "gaussian", "rademacher" or "lowrank"
    evaluate_mode: str  # "batched" or "inplace": decided once, by resolve_evaluate, when the backend is built

    def apply(self, pairs: Pairs) -> None:
        """theta <- theta + sum_i c_i * z(seed_i), in place, one noise pass per distinct seed."""

    def decay(self, factor: float) -> None:
        """theta <- factor * theta for decayable tensors (matrices; not biases or norms)."""

    def numel(self) -> int:
        """Number of tuned elements."""

    def generator_id(self) -> str:
        """Names the noise stream family (device type, chunking); replays must match it."""

    def fingerprint(self) -> str:
        """A short digest of the current tuned values, to check a trajectory's base weights."""

    def state_dict(self) -> dict:
        """The tuned tensors under their canonical (Hugging Face) names, as float32 CPU tensors."""

    def population(self, points: Sequence[Pairs]) -> ContextManager:
        """evaluate_mode 'batched': a context in which the model sees member i of `points` (theta + offset) after
        `select(i)`, weights untouched (blackbox_zo.weights.population.Population). 'inplace': raises ValueError."""


@runtime_checkable
class DenseBackend(Backend, Protocol):
    """A backend whose tensors live in this process: what the dense optimizers (momentum, adam) need."""

    def map_dense(self, pairs: Pairs, fn: Callable) -> None:
        """fn(name, tensor, g) for each tuned tensor and its slice g of sum_i c_i z(seed_i) (dense, float32)."""


class InPlace:
    """For backends that evaluate each point by moving their weights: no batched population."""

    evaluate_mode = "inplace"

    def population(self, points: Sequence[Pairs]) -> ContextManager:
        raise ValueError(f"{type(self).__name__} evaluates in place (evaluate='inplace'): it has no batched population")


def resolve_evaluate(requested: str, batches_by_default: bool, obstacle: Callable[[], str | None]) -> str:
    """How a space evaluates a step's points, decided here only: 'batched' (one forward per population, weights
    untouched) or 'inplace' (move the weights to each point).

    `requested` is the user's choice (ParamSpace(evaluate=...), config space.evaluate); 'auto' batches the spaces
    that prefer it (low-rank noise; the small LoRA, prefix and steering spaces). `obstacle()` names why this space
    cannot batch (None: it can; asked only when batching is wanted); 'batched' then fails with that reason,
    'auto' walks in place.
    """
    if requested not in EVALUATE:
        raise ValueError(f"evaluate must be one of {EVALUATE}, got {requested!r}")
    if requested == "inplace" or (requested == "auto" and not batches_by_default):
        return "inplace"
    why = obstacle()
    if why is None:
        return "batched"
    if requested == "batched":
        raise ValueError(f"evaluate='batched' is not possible here: {why}; use evaluate='inplace'")
    return "inplace"
