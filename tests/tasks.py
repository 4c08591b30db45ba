"""Config factories the tests name in `objective.factory` ("tests.tasks:NAME"): small real tasks, no test logic.

Why here: a run config imports its task by name, and test modules should not import each other.
"""

from __future__ import annotations

PROMPTS = ["Tell me about your day.", "What is a good breakfast?", "Describe the sea."]


def length_task() -> dict:
    """A reward over generated text (answer length in characters) on three prompts, validated on the same three."""
    from objectives import Generation, Reward

    rows = [{"prompt": p} for p in PROMPTS]
    reward = Reward(lambda prompts, completions, **_: [float(len(c)) for c in completions],
                    generation=Generation(max_new_tokens=6), name="length")
    return {"train": rows, "val": rows, "objective": reward}
