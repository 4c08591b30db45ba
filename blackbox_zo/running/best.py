"""The best validation step of a run, across resumes: the value it started from and every validation since.

A resumed run must pick its best step (what `export` writes) among ALL measured validations, not only those
after the resume, and report the value the run began from: start.json and metrics.jsonl keep both. A generation
run's best step is honest: only validations whose text stays within `train.fluency_bound` of the start's count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from blackbox_zo.running.quality import numbers_of
from blackbox_zo.setup.fluency_bound import FluencyBound
from blackbox_zo.setup.run_files import METRICS as METRICS_FILE
from blackbox_zo.setup.run_files import START as START_FILE
from blackbox_zo.step.jsonl import dumps, read_jsonl


@dataclass
class Best:
    """The best validation value measured and its step (a tie goes to the later, more-tuned step), and how many
    validations in a row did not improve on it (for patience)."""

    maximize: bool
    value: float | None
    step: int
    stale: int = 0

    def update(self, value: float, step: int, within: bool = True) -> None:
        """Count a validation; one past the fluency bound (within=False) is never the best and does not improve."""
        if not within:
            self.stale += 1
            return
        improved = self.value is None or (value > self.value if self.maximize else value < self.value)
        if improved or value == self.value:
            self.value, self.step = value, step
        self.stale = 0 if improved else self.stale + 1


@dataclass(frozen=True)
class RunStart:
    """The validation the run began from, and the step count it was measured at (0, or an unrecorded resume)."""

    value: float | None
    per_example: list | None
    step: int
    text: dict | None = None  # the start's text numbers (generation runs): what the fluency bound is measured from


def run_start(out_dir: str | Path | None, step_count: int, value: float | None, per_example: list | None,
              text: dict | None = None) -> RunStart:
    """A fresh run records its start validation in out_dir; a resumed one reads it back (runs from before the
    record existed start from the resume point's `value`)."""
    path = Path(out_dir) / START_FILE if out_dir else None
    if path is not None and step_count and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return RunStart(saved["val"], saved["per_example"], 0, saved.get("text"))
    if path is not None and step_count == 0 and value is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps({"val": value, "per_example": per_example, "text": text}), encoding="utf-8")
    return RunStart(value, per_example, step_count, text)


def renumbered(rows: list) -> tuple[list[dict], bool]:
    """metrics rows with "step" counting updates applied (the first step's row is 1), and whether they were written
    before 0.3, when rows counted from 0 (the first row is step 0: every step number is one higher now)."""
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("step"), int)]
    old = bool(rows) and rows[0]["step"] == 0  # a run's first row is its first step: 0 only in the old numbering
    return ([{**r, "step": r["step"] + 1} for r in rows] if old else rows), old


def metrics_rows(path: str | Path) -> list[dict]:
    """metrics.jsonl's rows, numbered by updates applied; a torn last line (a crash mid-write) is reported, ignored."""
    return renumbered(read_jsonl(path).rows)[0]


def honest(bound: FluencyBound | None, drift, start_text: dict | None, numbers: dict | None) -> bool:
    """Honest selection: a validation past the fluency bound (from the start's text) or past train.drift (a
    DriftTarget) is never the best step."""
    return (bound is None or not bound.breaches(start_text, numbers)) and (drift is None or drift.within(numbers))


def best_across_resumes(out_dir: str | Path | None, maximize: bool, start: RunStart, step_count: int,
                        value_now: float | None, bound: FluencyBound | None = None,
                        text_now: dict | None = None, train=None) -> tuple[Best, list[dict]]:
    """Best over the start, the validations metrics.jsonl holds for steps before `step_count`, and the value
    measured at the resume point (text numbers `text_now`), counting only validations within `bound` of the
    start's text; also returns those earlier rows (for the plot).

    The resume point's value counts only where an uninterrupted run validates too (`train.validates_after`): a
    validation step whose row a kill lost (the same weights and seed give the same value). Any other resume point
    is never a best step, so a resumed run ends on the uninterrupted run's best step and export."""
    best = Best(maximize, start.value, start.step)

    def within(numbers: dict | None) -> bool:
        return honest(bound, train.drift if train is not None else None, start.text, numbers)

    path = Path(out_dir) / METRICS_FILE if out_dir else None
    if not step_count or path is None or not path.exists():
        return best, []
    earlier = [row for row in metrics_rows(path) if row["step"] <= step_count]
    for row in earlier:
        if row.get("val") is not None:
            best.update(row["val"], row["step"], within(numbers_of(row)))
    measured_here = any(row["step"] == step_count and row.get("val") is not None for row in earlier)
    scheduled = train is None or train.validates_after(step_count - 1)
    if start.step == 0 and value_now is not None and not measured_here and scheduled:
        best.update(value_now, step_count, within(text_now))  # the resume point's own validation is a measured step too
    return best, earlier
