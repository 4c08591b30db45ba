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


class NanFirstStep:
    """NLL of the prompt's own text, but NaN at both sides of the first step (an objective that fails once)."""

    name, maximize = "nll_nan_first", False

    def __init__(self):
        self.calls = 0

    def evaluate(self, lm, batch, *, seed=None):
        self.calls += 1
        if self.calls in (2, 3):  # call 1 is the start's validation; 2 and 3 are step 1's two sides
            return float("nan")
        return -sum(lm.loglik([""] * len(batch), [r["prompt"] for r in batch])) / len(batch)


def nan_first_step_task() -> dict:
    rows = [{"prompt": p} for p in PROMPTS]
    return {"train": rows, "val": rows, "objective": NanFirstStep()}
