"""The fluency bound of honest selection: how far a generation run's held answers may move from the start's.

Why: a reward can rise while the answers turn into loops or one repeated symbol; a best step is chosen only among
validations whose text stays within these bounds of the validation before the first step (`train.fluency_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _bound(value: float | None, key: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value < 0):
        raise ValueError(f"train.fluency_bound.{key} must be a number >= 0 or null (no bound), got {value!r}")


@dataclass
class FluencyBound:
    """Allowed moves from the start: held NLL per token under pi_0 up by `nll` nats, the share of repeated word
    and token trigrams up by `repeated_trigrams`, distinct-2 down by `distinct_2`; null switches a bound off."""

    nll: float | None = 0.3
    repeated_trigrams: float | None = 0.02
    distinct_2: float | None = 0.05

    def __post_init__(self):
        for key in ("nll", "repeated_trigrams", "distinct_2"):
            _bound(getattr(self, key), key)

    def breaches(self, start: dict | None, now: dict | None) -> list[str]:
        """The text numbers of `now` past their bound from `start` (both as text_metrics gives them); [] when
        either is missing (a run that is not a generation run has no text to bound)."""
        if not start or not now:
            return []
        rises = [("nll", self.nll), ("repeated_trigrams", self.repeated_trigrams),
                 ("repeated_token_trigrams", self.repeated_trigrams)]
        out = [key for key, bound in rises
               if bound is not None and key in start and key in now and now[key] > start[key] + bound]
        if self.distinct_2 is not None and "distinct_2" in start and "distinct_2" in now \
                and now["distinct_2"] < start["distinct_2"] - self.distinct_2:
            out.append("distinct_2")
        return out
