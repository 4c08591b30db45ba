"""The honest gain: a reward gain counted only when the tuned answers stay text (issue 34's fluency bound).

Why: a reward can rise while the answers turn into loops or a string of one symbol; a benchmark row then reports
the gain only when held NLL under the untuned model, repetition and diversity stayed near the start.
"""

from __future__ import annotations

# (metric, direction, allowed change from the start): "up" bounds a rise, "down" bounds a fall
BOUNDS = (("nll", "up", 0.3),  # mean NLL per token under pi_0, nats
          ("repeated_trigrams", "up", 0.02),  # share of repeated word trigrams
          ("repeated_token_trigrams", "up", 0.02),  # the same on words and symbols ("&&&&" has no words)
          ("distinct_2", "down", 0.05))


def bounds_missed(before: dict, after: dict, bounds=BOUNDS) -> list[str]:
    """The bounds the tuned answers crossed, e.g. ['nll +0.61 > +0.3'] (empty: within every bound)."""
    missed = []
    for key, direction, limit in bounds:
        change = after[key] - before[key]  # after - before; a rise for "up", a fall (negative) for "down"
        if direction == "up" and change > limit:
            missed.append(f"{key} {change:+.3f} > +{limit:g}")
        elif direction == "down" and change < -limit:
            missed.append(f"{key} {change:+.3f} < -{limit:g}")
    return missed


def honest_gain(reward_before: float, reward_after: float, before: dict, after: dict, bounds=BOUNDS) -> dict:
    """The gain, and the gain counted only within the bounds: `honest` is the gain or None, `counted` the gain or 0
    (a gain made of broken text counts as none in a mean over seeds), `shown` how a table prints it."""
    gain = reward_after - reward_before
    missed = bounds_missed(before, after, bounds)
    return {"gain": gain, "honest": None if missed else gain, "counted": 0.0 if missed else gain, "missed": missed,
            "shown": f"missed ({'; '.join(missed)})" if missed else f"{gain:+.3f}"}
