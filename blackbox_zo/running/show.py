"""`blackbox-zo eval`: the validation value at a step, its held answers' text numbers, and N answers beside the
untuned model's (`--show N`).

Why: a reward that rose says nothing of what the answers became; reading a few tuned answers next to the ones the
run started from shows it at once, with no code (steering and LoRA exports are not models a user can chat with).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from blackbox_zo.running.quality import read_samples, text_numbers
from blackbox_zo.setup.calls import value_of
from blackbox_zo.setup.reference import attach_reference


def untuned_answers(run_dir: str | Path, objective: Any, reference: Any, data: list[dict], seed: int) -> list[str] | None:
    """The answers of step 0: stored by the run (samples.jsonl, the same rows and seed), else written now by the
    objective's pi_0 (`reference`) when it has one; None when neither is there."""
    stored = read_samples(run_dir).get(0)
    if stored and len(stored) == len(data):
        return [row["answer"] for row in stored]
    if reference is None:
        return None
    return (objective.evaluate(reference, data, seed=seed).info or {}).get("answers")


def side_by_side(prompts: list[str], untuned: list[str] | None, tuned: list[str], step: int, n: int) -> str:
    """N prompts, each with its untuned and its tuned answer, indented and wrapped for a terminal."""
    def block(label: str, text: str) -> str:
        body = textwrap.indent(text.strip() or "(empty)", "      ")
        return f"  {label}:\n{body}"

    parts = []
    for i, (prompt, answer) in enumerate(list(zip(prompts, tuned))[:n]):
        before = untuned[i] if untuned is not None else "(not stored: the run kept no step-0 samples)"
        parts.append(f"[{i + 1}] {prompt.strip()}\n{block('untuned (step 0)', before)}\n{block(f'tuned (step {step})', answer)}")
    return "\n\n".join(parts)


def eval_report(cfg: Any, task: dict, loaded: Any, data: list[dict], seed: int, step: int, run_dir: str | Path,
                show: int = 0) -> tuple[dict, str | None]:
    """The validation value at the rebuilt step and, for a generation run, its text numbers (held NLL under pi_0
    where a reference is free or the KL brake asks for one); with show > 0 also N answers beside the untuned ones."""
    task = attach_reference(cfg, task, loaded)  # pi_0 for the held NLL, as in the run (and its unbraked validation)
    objective = task.get("val_objective") or task["objective"]
    reference = objective.reference if task["val_traits"].takes_reference else None
    score = objective.evaluate(loaded.lm, data, seed=seed)
    line: dict = {"value": value_of(score)}
    numbers = text_numbers(objective, score)
    if numbers:
        line["text"] = numbers
    answers = (getattr(score, "info", None) or {}).get("answers")
    if not show or not answers:
        return line, None if not show else "(this objective's score carries no answers to show)"
    prompts = score.info.get("prompts") or [""] * len(answers)
    return line, side_by_side(prompts, untuned_answers(run_dir, objective, reference, data, seed), answers, step, show)
