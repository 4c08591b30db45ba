"""`train.drift`: the drift from pi_0 a user accepts, held by the anchor's strength as PPO's adaptive KL holds beta.

Why: a user wants to say "this much change from my model, and the most reward within it"; tuning an anchor by hand
is a knife-edge. At each validation the measured per-token KL sets the anchor's next strength (Ziegler et al. 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DriftTarget:
    """KL(pi_theta || pi_0) per token at the held answers to hold near `kl` (nats/token): a validation above it is
    never the best step, and the anchor's lambda is scaled by 1 + gain x clip(KL / kl - 1, +-0.5) after each one."""

    kl: float = 0.1
    gain: float = 1.0  # Ziegler et al.'s K_beta, per validation (they update per step with 0.1)
    limit: float = 100.0  # the scale stays within [1 / limit, limit] x optim.anchor

    def __post_init__(self):
        for key in ("kl", "gain", "limit"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"train.drift.{key} must be a finite number > 0, got {value!r}")
        if self.limit < 1:
            raise ValueError(f"train.drift.limit must be >= 1 (a factor around optim.anchor), got {self.limit!r}")

    def next_scale(self, scale: float, kl: float) -> float:
        """The anchor scale after a validation that measured `kl`: stronger above the target, weaker below it."""
        error = min(0.5, max(-0.5, kl / self.kl - 1.0))  # e_t = clip(KL_t / KL_target - 1, -0.5, 0.5)
        return min(self.limit, max(1.0 / self.limit, scale * (1.0 + self.gain * error)))  # s_{t+1} = s_t (1 + K e_t)

    def within(self, numbers: dict | None) -> bool:
        """Whether a validation's text numbers stay within the target (True when it measured no KL)."""
        kl = drift_of(numbers)
        return kl is None or kl <= self.kl


def drift_of(numbers: dict | None) -> float | None:
    """The per-token KL a validation measured: exact where it could be, else the k3 estimate; None without one."""
    for key in ("kl_exact", "kl_k3"):
        if numbers and isinstance(numbers.get(key), (int, float)):
            return float(numbers[key])
    return None
