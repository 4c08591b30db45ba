"""The honest gain: a reward gain counted only when the tuned answers stay text (the library's fluency bound, train.fluency_bound).

Why: a reward can rise while the answers turn into loops or a string of one symbol; a benchmark row then reports
the gain only when held NLL under the untuned model, repetition and diversity stayed near the start.
"""

from __future__ import annotations

from blackbox_zo.setup.fluency_bound import FluencyBound

RULE = FluencyBound()  # the library's default train.fluency_bound: what a run's best step and these rows obey


def bounds_missed(before: dict, after: dict, rule: FluencyBound = RULE) -> list[str]:
    """The bounds the tuned answers crossed, e.g. ['nll +0.61 > +0.3'] (empty: within every bound): the rule's
    own breaches (FluencyBound.breaches), each shown with the change that crossed it."""
    limits = {"nll": f"> +{rule.nll:g}", "repeated_trigrams": f"> +{rule.repeated_trigrams:g}",
              "repeated_token_trigrams": f"> +{rule.repeated_trigrams:g}"}
    out = []
    for key in rule.breaches(before, after):
        change = after[key] - before[key]
        if key == "distinct_2":  # relative: distinct-2 below distinct_2_ratio x its start
            out.append(f"{key} {after[key] / before[key]:.2f}x < {rule.distinct_2_ratio:g}x")
        else:
            out.append(f"{key} {change:+.3f} {limits[key]}")
    return out


def honest_gain(reward_before: float, reward_after: float, before: dict, after: dict, rule: FluencyBound = RULE) -> dict:
    """The gain, and the gain counted only within the bounds: `honest` is the gain or None, `counted` the gain or 0
    (a gain made of broken text counts as none in a mean over seeds), `shown` how a table prints it."""
    gain = reward_after - reward_before
    missed = bounds_missed(before, after, rule)
    return {"gain": gain, "honest": None if missed else gain, "counted": 0.0 if missed else gain, "missed": missed,
            "shown": f"missed ({'; '.join(missed)})" if missed else f"{gain:+.3f}"}
