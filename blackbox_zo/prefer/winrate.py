"""The optional progress proxy: a judge named in the config compares tuned and base completions.

People vote on the training pairs; asking them to also judge held-back prompts every step would double
their work, so the running win-rate comes from a judge or reward the config names ("module:function").
"""

from __future__ import annotations

from typing import Any, Sequence


def load_judge(spec: str, args: dict) -> Any:
    """Call the factory the config names with its args; it returns a judge or a reward callable."""
    from blackbox_zo.setup.assembly import load_factory  # "module:function" import with config errors that name the key

    return load_factory(spec)(**args)


def verdicts(judge: Any, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
    """+1 where a is better, -1 where b is, 0 for a tie; from compare_batch, compare, or a reward f(prompts, texts)."""
    if hasattr(judge, "compare_batch"):
        raw = list(judge.compare_batch(list(prompts), list(outs_a), list(outs_b)))
    elif hasattr(judge, "compare"):
        raw = [judge.compare(p, a, b) for p, a, b in zip(prompts, outs_a, outs_b)]
    elif callable(judge):  # a reward: score both sides in one call, the higher reward wins
        n = len(prompts)
        r = [float(v) for v in judge(list(prompts) * 2, list(outs_a) + list(outs_b))]
        if len(r) != 2 * n:
            raise ValueError(f"win-rate reward returned {len(r)} values for {2 * n} completions")
        raw = [(ra > rb) - (ra < rb) for ra, rb in zip(r[:n], r[n:])]
    else:
        raise TypeError(f"win-rate judge {type(judge).__name__} has neither compare_batch, compare nor __call__")
    if len(raw) != len(prompts) or any(v not in (-1, 0, 1) for v in raw):
        raise ValueError(f"win-rate judge must return one of -1, 0, +1 per prompt; got {raw!r:.200}")
    return [int(v) for v in raw]


def win_rate(judged: Sequence[int]) -> float:
    """Share of held-back prompts where the tuned answer wins, ties counting half: (W + T/2) / N."""
    return (sum(v > 0 for v in judged) + 0.5 * sum(v == 0 for v in judged)) / len(judged)
