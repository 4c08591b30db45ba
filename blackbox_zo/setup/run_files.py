"""Every file name of a run folder, defined once: what each file holds is said here, next to its name.

Why: the writers (run, trainer, lock, export) and the readers (resume, eval, export, load_tuned) must agree on
names; one module keeps them from drifting apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAJECTORY = "trajectory.jsonl"  # header + one line per step: seeds and scalars, the run's source of truth (replay)
METRICS = "metrics.jsonl"  # one row per step, "step" = updates applied (1, 2, ...); "val" and text numbers where validated
START = "start.json"  # the validation before the first step: {"val", "per_example", "text"}
SAMPLES = "samples.jsonl"  # {"step", "prompt", "answer", "reward"} per held answer per validation
SUMMARY = "summary.json"  # start / best / final validation, best step, fingerprint: what export reads
CONFIG = "config.json"  # the run's config as it was checked
INPUTS = "inputs.json"  # what a resume must match: objective, space, batch seed and size, a digest of the data
LOCK = "run.lock"  # held (fcntl.flock) while a command writes the folder: one writer
PLOT = "objective.png"  # the objective and validation by step, and a generation run's text numbers
VOTES = "votes.sqlite"  # the preference page's votes (a prefer run folder)
STARTED = (TRAJECTORY, METRICS, START, SAMPLES, CONFIG, INPUTS, PLOT)  # what a run's first start writes
MARKERS = (TRAJECTORY, VOTES, LOCK)  # a folder holding one of these is a run folder: no export may replace it


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder's files."""

    root: Path

    def __truediv__(self, name: str) -> Path:
        return Path(self.root) / name

    @property
    def trajectory(self) -> Path:
        return self / TRAJECTORY

    @property
    def metrics(self) -> Path:
        return self / METRICS

    @property
    def summary(self) -> Path:
        return self / SUMMARY

    @property
    def config(self) -> Path:
        return self / CONFIG

    def is_run(self) -> bool:
        """A run folder of a finished or started run: its config and trajectory are there."""
        return self.trajectory.exists() and self.config.exists()
