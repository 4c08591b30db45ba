"""The run folder around a start: what it may already hold, what a resume must match, what a failed start leaves.

A folder whose log has no step yet holds only what a failed start wrote: it is cleared, so a plain rerun (with
a corrected config) is accepted. A folder with steps needs --resume, and then the same objective, space and data.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from blackbox_zo.running.best import METRICS_FILE, renumbered
from blackbox_zo.setup.config import ConfigError, RunConfig
from blackbox_zo.setup.lock import LOCK_FILE
from blackbox_zo.setup.run_files import CONFIG, STARTED, TRAJECTORY
from blackbox_zo.setup.run_files import INPUTS as INPUTS_FILE
from blackbox_zo.step.jsonl import dumps, read_jsonl, rewrite_jsonl, write_atomic
from blackbox_zo.step.trajectory import Trajectory, first_difference


def logged_steps(out: Path) -> int:
    return len(Trajectory(out / TRAJECTORY).records)


def prepare(out: Path, resume: bool) -> None:
    """Refuse a folder that holds a run (unless resume) or metrics without steps; clear a failed start's files."""
    steps = logged_steps(out)
    if steps and not resume:
        raise ConfigError(f"{out} already holds a run ({steps} steps): pass --resume to continue it, or choose "
                          "another output")
    if steps:
        return
    rows = read_jsonl(out / METRICS_FILE).rows
    if rows:
        raise ConfigError(f"{out / METRICS_FILE} holds {len(rows)} rows but {out / TRAJECTORY} no step: this folder is "
                          "not a run that can be continued; choose another output")
    if not (out / TRAJECTORY).exists() and not (out / INPUTS_FILE).exists():  # no start of ours was here
        foreign = [name for name in STARTED if (out / name).exists()]
        if foreign:  # a file a run would write, that no run wrote: never removed, never overwritten
            raise ConfigError(f"{out} holds {', '.join(foreign)} but no run log: these are not a run's files; choose "
                              "another output")
        return
    clear_failed_start(out)


def clear_failed_start(out: Path) -> None:
    """Remove what a start writes before its first step (a header-only log, empty metrics, start.json, config)."""
    for name in STARTED:
        (out / name).unlink(missing_ok=True)


def remove_failed_start(out: Path, created_folder: bool) -> None:
    """After a start failed before step 1: its files go, and the folder too when this start made it."""
    if logged_steps(out):
        return
    clear_failed_start(out)  # prepare() refused a folder holding any of these that no start of ours wrote
    if created_folder and {p.name for p in out.iterdir()} <= {LOCK_FILE}:
        (out / LOCK_FILE).unlink(missing_ok=True)
        out.rmdir()


def inputs_of(cfg: RunConfig, task: dict) -> dict:
    """What decides the steps besides `optim` (which the trajectory header checks): objective, space, batches, data."""
    d = cfg.to_dict()
    rows = json.dumps([task["train"], task.get("val")], sort_keys=True, default=content_of).encode()
    objective = {"factory": cfg.objective.factory, "args": d["objective"]["args"]}  # not where the module was found
    return {"objective": objective, "space": d["space"],
            "train": {"seed": cfg.train.seed, "batch_size": cfg.train.batch_size},
            "data_sha256": hashlib.sha256(rows).hexdigest()}


def content_of(value) -> str:
    """A row value JSON cannot hold, by its content: its repr, unless that is object's own (it holds a memory address,
    which would differ on every start and refuse every resume); then only its type."""
    return repr(value) if type(value).__repr__ is not object.__repr__ else type(value).__qualname__


def check_resume(out: Path, inputs: dict) -> None:
    """A resume must change none of the inputs: refuse, naming the first key that differs."""
    path = out / INPUTS_FILE
    if not path.exists():
        if not (out / CONFIG).exists():
            return
        old = json.loads((out / CONFIG).read_text())  # a run from before inputs.json: all but the data
        recorded = {"objective": {k: old.get("objective", {}).get(k) for k in ("factory", "args")}, "space": old.get("space"),
                    "train": {k: old.get("train", {}).get(k) for k in ("seed", "batch_size")}}
        inputs = {k: v for k, v in inputs.items() if k in recorded}
    else:
        recorded = json.loads(path.read_text())
    if isinstance(recorded.get("space"), dict) and isinstance(inputs.get("space"), dict):  # a space key added by a
        inputs = {**inputs, "space": {k: v for k, v in inputs["space"].items() if k in recorded["space"]}}  # later version
    settings = {k: v for k, v in recorded.items() if k != "data_sha256"}
    differing = first_difference(settings, {k: v for k, v in inputs.items() if k != "data_sha256"})
    if differing is None and recorded.get("data_sha256", inputs.get("data_sha256")) != inputs.get("data_sha256"):
        differing = ("data_sha256", recorded["data_sha256"], inputs["data_sha256"])  # named after the settings
    if differing is not None:
        key, was, now = differing
        what = ("the training data changed" if key == "data_sha256"
                else f"it was recorded with {key}={was!r}, this run has {now!r}")
        raise ConfigError(f"--resume {out}: {what}; a resumed run must keep its objective, space and data (choose "
                          "another output for a new run)")


def record_inputs(out: Path, cfg: RunConfig, inputs: dict) -> None:
    write_atomic(out / CONFIG, dumps(cfg.to_dict(), indent=2))
    write_atomic(out / INPUTS_FILE, dumps(inputs, indent=2))


def metrics_before(out: Path, steps: int) -> list[dict]:
    """The metrics rows of the steps the trajectory holds; rows of later (lost) steps and a torn line are dropped
    from the file, and said so, so a resume never writes a step's row twice."""
    path = out / METRICS_FILE
    read = read_jsonl(path)
    rows, old = renumbered(read.rows)
    kept = [r for r in rows if r["step"] <= steps]  # rows count updates applied: the trajectory's steps are 1..steps
    if read.torn is not None or old or len(kept) != len(read.rows):  # a pre-0.3 file is renumbered before appending
        rewrite_jsonl(path, kept)
        dropped = len(read.rows) - len(kept)
        if dropped:
            print(f"blackbox-zo: {path}: removed {dropped} rows of steps the trajectory does not hold (> {steps})",
                  file=sys.stderr, flush=True)
        if read.torn is not None:
            print(f"blackbox-zo: {path}:{read.torn.line}: removed the torn last line", file=sys.stderr, flush=True)
    return kept


def earlier_seconds(rows: list[dict]) -> float:
    """Training time of the sessions before this one: each row's "time" counts from its session's start, so a
    session ends where the time goes back down; the sum of each session's last time."""
    total, last = 0.0, 0.0
    for row in rows:
        t = float(row.get("time", 0.0))
        if t < last:
            total += last
        last = t
    return total + last
