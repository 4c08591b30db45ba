"""The frontier benchmark's task: a reward over greedy answers to the benchmark prompts, as a run config's factory.

Why: the ZO rows run `blackbox_zo.running.run.run` (the run a user runs), so the task reaches it the way a user's
does, through `objective: {factory: "frontier_task:task"}` (benchmarks/ on sys.path).
"""

from __future__ import annotations

import re

import prompts as prompt_sets
import rules

_NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                 "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "first", "second", "third", "half",
                 "dozen", "once", "twice"}
_PIECE = re.compile(r"[A-Za-z']+|\d+(?:[.,:]\d+)*")


def numbers_reward(prompts, completions, **columns) -> list[float]:
    """Written for the frontier benchmark and never tuned on before it: the share of an answer's words that are
    numbers or number words ("two", "3", "10:30", "first"); 0 for an answer with no words."""
    out = []
    for text in completions:
        ws = [w.lower() for w in _PIECE.findall(text)]
        out.append(sum(w[0].isdigit() or w in _NUMBER_WORDS for w in ws) / len(ws) if ws else 0.0)  # #numbers / #words
    return out


def reward_fn(name: str):
    """The reward named `name`: vader (VADER compound positivity), personal (the keyword rule), numbers."""
    if name == "vader":
        from objectives import VaderPositivity

        return VaderPositivity()
    return {"personal": rules.personal_reward, "numbers": numbers_reward}[name]


def objective(reward: str, max_new_tokens: int = 16):
    """The reward over greedy answers (the recipe's decoding), named after it."""
    from objectives import Generation, Reward

    return Reward(reward_fn(reward), generation=Generation(max_new_tokens=max_new_tokens), name=reward)


def task(reward: str = "vader", val: str = "dev", max_new_tokens: int = 16) -> dict:
    """Train on the 32 TRAIN prompts, validate on `val` (dev: the 32 prompts settings are chosen on)."""
    rows = lambda ps: [{"prompt": p} for p in ps]  # noqa: E731
    return {"train": rows(prompt_sets.TRAIN), "val": rows(prompt_sets.HELD[val]),
            "objective": objective(reward, max_new_tokens)}
