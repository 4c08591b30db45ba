"""Every file name of a run folder, defined once: what each file holds is said here, next to its name.

Why: the writers (run, trainer, lock, export) and the readers (resume, eval, export, load_tuned) must agree on
names; one module keeps them from drifting apart.
"""

from __future__ import annotations

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


def is_run_folder(folder: str | Path) -> bool:
    """A folder of a started run: its checked config and its trajectory are there."""
    return (Path(folder) / TRAJECTORY).exists() and (Path(folder) / CONFIG).exists()
