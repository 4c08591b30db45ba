"""Every file a run writes is standard JSON: no bare NaN or Infinity, which strict readers (JavaScript, jq) refuse.

A skipped step (its objective was NaN) is the case: the trajectory spells the values "NaN" so replay reads them
back with float(); metrics and the summary write null for the missing number.
"""

from __future__ import annotations

import json

from blackbox_zo.running.artifacts import rebuild
from blackbox_zo.running.run import run


def strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_skipped_step_is_written_as_standard_json_and_replays(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    cfg = {"model": {"name": str(tiny_llama_dir), "batch_size": 4}, "objective": {"factory": "tests.tasks:nan_first_step_task"},
           "space": {"include": ["norm"]}, "optim": {"lr": 1e-3},
           "train": {"steps": 3, "batch_size": 2, "eval_every": 1, "plot": True, "progress": False}, "output": str(out)}
    summary = run(cfg)
    trajectory = [strict(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert trajectory[1]["skipped"] and trajectory[1]["values"] == ["NaN", "NaN"]
    metrics = [strict(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["objective"] is None and metrics[1]["objective"] is not None
    strict((out / "summary.json").read_text())
    assert summary["nonfinite_steps"] == 1
    _, loaded, _ = rebuild(out, step="last")  # replay reads the spelled NaN back
    assert loaded.space.fingerprint() == summary["final_fingerprint"]

