"""The contract between the engine and whatever holds the tuned tensors (torch in-process, vLLM workers).

Only seeds and scalars cross it: the engine never sees a tensor, so a backend may live in another
process or on another machine. Directions come from `blackbox_zo.weights.noise` keyed by canonical names.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

Pairs = Sequence[tuple[int, float]]  # implicit vector: sum_i c_i * z(seed_i)
# how a backend evaluates a step's points: at use time in one batched forward, by moving the weights, or the
# first where every tuned tensor's use can be hooked (ParamSpace(evaluate=...), config space.evaluate)
EVALUATE = ("auto", "batched", "inplace")


@runtime_checkable
class Backend(Protocol):
    noise_kind: str  # "gaussian" or "rademacher"

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
