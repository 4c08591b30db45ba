"""What tuning did to a generation run's text: the held answers (samples.jsonl) and their numbers beside the reward.

Why: a reward can rise on text that breaks. An objective whose validation Score carries its answers and that
has `text_report(score)` (objectives over generated text do) gets its answers stored at every validation and
its text numbers (held NLL under pi_0, repeated word / token trigrams, distinct-2, mean length) logged as
`val_<name>` columns; the engine never learns what an answer is.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from blackbox_zo.setup.run_files import SAMPLES as SAMPLES_FILE
from blackbox_zo.setup.traits import TextReporting

SHOWN = ("nll", "repeated_trigrams", "repeated_token_trigrams", "distinct_2", "mean_length", "kl", "reward", "kl_exact",
         "kl_k3")  # kl: the brake's KL-hat per answer; kl_exact / kl_k3: drift per token from pi_0 (objectives.drift)
SHORT = {"nll": "nll", "repeated_token_trigrams": "rep", "distinct_2": "d2", "kl_exact": "kl",
         "kl_k3": "kl"}  # the progress line's names


def text_numbers(objective: Any, score: Any, lm: Any = None) -> dict[str, float] | None:
    """The objective's text report of `score` (None when it has none), with the KL-hat and the unbraked reward
    the score's info carries when a KL brake is on. Given the `lm` the score was measured on (in process), the
    report adds the answers' per-token drift from pi_0."""
    if not isinstance(objective, TextReporting):  # the objective contract (setup/traits.py)
        return None
    numbers = objective.text_report(score) if lm is None else objective.text_report(score, lm)
    if numbers is None:
        return None
    info = getattr(score, "info", {}) or {}
    extra = {k: info[k] for k in ("kl", "reward") if isinstance(info.get(k), (int, float))}
    return {k: float(v) for k, v in {**numbers, **extra}.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def val_columns(numbers: dict | None) -> dict[str, float]:
    """The metrics row's columns for a validation's text numbers: val_nll, val_distinct_2, ..."""
    return {f"val_{k}": v for k, v in (numbers or {}).items()}


def numbers_of(row: dict) -> dict[str, float] | None:
    """The text numbers a metrics row holds (the inverse of val_columns), or None."""
    found = {k: row[f"val_{k}"] for k in SHOWN if f"val_{k}" in row}
    return found or None


def write_samples(out_dir: str | Path | None, step: int, score: Any) -> None:
    """Append the held answers `score` carries to out_dir/samples.jsonl, flushed and fsynced (nothing without them)."""
    info = getattr(score, "info", {}) or {}
    answers, prompts = info.get("answers"), info.get("prompts")
    if not out_dir or not answers or not prompts:
        return
    values = getattr(score, "per_example", None) or [None] * len(answers)
    lines = [json.dumps({"step": step, "prompt": p, "answer": a, "reward": v})
             for p, a, v in zip(prompts, answers, values)]
    path = Path(out_dir) / SAMPLES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_samples(run_dir: str | Path) -> dict[int, list[dict]]:
    """The stored answers of a run by step (0: before the first step); {} when it stored none."""
    path = Path(run_dir) / SAMPLES_FILE
    by_step: dict[int, list[dict]] = {}
    if not path.exists():
        return by_step
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line (a crash mid-write)
            continue
        by_step.setdefault(int(row["step"]), []).append(row)
    return by_step


def postfix(numbers: dict | None) -> dict[str, str]:
    """The progress line's text numbers: held NLL, repeated token trigrams, distinct-2."""
    return {short: f"{numbers[k]:.3g}" for k, short in SHORT.items() if numbers and k in numbers}


def plot_text(ax, points: list[tuple[int, dict]]) -> None:
    """The held answers' text numbers by validated step: NLL under pi_0 on the left axis, shares on the right."""
    steps = [s for s, _ in points]
    if all("nll" in n for _, n in points):
        ax.plot(steps, [n["nll"] for _, n in points], "o-", color="black", label="held NLL / token (pi_0)")
        ax.set_ylabel("nats / token")
    for key in ("kl_exact", "kl_k3"):
        if all(key in n for _, n in points):
            ax.plot(steps, [n[key] for _, n in points], "s-", color="tab:red", label=f"KL(pi_theta || pi_0) / token ({key[3:]})")
    shares = ax.twinx()
    for key in ("repeated_trigrams", "repeated_token_trigrams", "distinct_2"):
        if all(key in n for _, n in points):
            shares.plot(steps, [n[key] for _, n in points], ".--", label=key.replace("_", " "))
    shares.set_ylabel("share")
    ax.set_xlabel("step")
    lines = ax.get_legend_handles_labels()[0] + shares.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], fontsize="small")
