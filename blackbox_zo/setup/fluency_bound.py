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
    and token trigrams up by `repeated_trigrams`, distinct-2 no lower than `distinct_2_ratio` x its start (and, if
    set, no more than `distinct_2` below it); null switches a bound off.

    Why relative for distinct-2: answers that stay sentences but grow alike lose a few points of distinct-2 from
    a high start (0.9 -> 0.8); a fixed -0.05 refused those, while a loop halves it."""

    nll: float | None = 0.3
    repeated_trigrams: float | None = 0.02
    distinct_2_ratio: float | None = 0.8
    distinct_2: float | None = None  # an absolute floor below the start (the rule before 0.3 was 0.05)

    def __post_init__(self):
        for key in ("nll", "repeated_trigrams", "distinct_2_ratio", "distinct_2"):
            _bound(getattr(self, key), key)
        if self.distinct_2_ratio is not None and self.distinct_2_ratio > 1:
            raise ValueError(f"train.fluency_bound.distinct_2_ratio must be <= 1 (a share of the start's distinct-2), "
                             f"got {self.distinct_2_ratio!r}")

    def breaches(self, start: dict | None, now: dict | None) -> list[str]:
        """The text numbers of `now` past their bound from `start` (both as text_metrics gives them); [] when
        either is missing (a run that is not a generation run has no text to bound)."""
        if not start or not now:
            return []
        rises = [("nll", self.nll), ("repeated_trigrams", self.repeated_trigrams),
                 ("repeated_token_trigrams", self.repeated_trigrams)]
        out = [key for key, bound in rises
               if bound is not None and key in start and key in now and now[key] > start[key] + bound]
        if "distinct_2" in start and "distinct_2" in now:
            floors = [start["distinct_2"] * r for r in (self.distinct_2_ratio,) if r is not None]
            floors += [start["distinct_2"] - d for d in (self.distinct_2,) if d is not None]
            if any(now["distinct_2"] < floor for floor in floors):
                out.append("distinct_2")
        return out
