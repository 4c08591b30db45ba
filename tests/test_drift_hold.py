"""`train.drift`: a run holds the drift a user accepts by the anchor's strength, and picks its best step within it.

Real parts: a config run on a tiny real Llama with steering vectors and a length reward; the exact KL of each
validation drives the anchor; the trajectory logs the scale, so a rebuild at the last step is the live model.
"""

from __future__ import annotations

import json

import pytest

from blackbox_zo.running.artifacts import rebuild
from blackbox_zo.running.run import run
from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.drift_target import DriftTarget


def test_the_scale_rises_above_the_target_falls_below_and_stays_in_its_limits():
    target = DriftTarget(kl=0.1)
    assert target.next_scale(1.0, 0.2) == pytest.approx(1.5)  # error clipped to +0.5
    assert target.next_scale(1.0, 0.12) == pytest.approx(1.2)
    assert target.next_scale(1.0, 0.05) == pytest.approx(0.5)
    assert target.next_scale(1.0, 0.1) == 1.0
    assert DriftTarget(kl=0.1, limit=2).next_scale(1.9, 1.0) == 2.0
    assert target.within({"kl_exact": 0.1}) and not target.within({"kl_k3": 0.11}) and target.within(None)


@pytest.mark.parametrize("bad", [float("nan"), 0, -1, True])
def test_a_bad_target_is_named(bad):
    with pytest.raises(ValueError, match="train.drift.kl must be a finite number > 0"):
        DriftTarget(kl=bad)


def config(model_dir, out, **train):
    return {"model": {"name": str(model_dir), "batch_size": 4},
            "objective": {"factory": "tests.tasks:length_task"},
            "space": {"kind": "steer", "steer_layers": [0]},
            "optim": {"lr": 0.3, "anchor": 1.0, "seed": 0, "maximize": True},
            "train": {"steps": 6, "batch_size": 2, "eval_every": 1, "plot": False, "progress": False, **train},
            "output": str(out)}


def test_drift_needs_an_anchor_to_hold_it(tiny_llama_dir, tmp_path):
    cfg = config(tiny_llama_dir, tmp_path / "r", drift={"kl": 0.1})
    cfg["optim"].pop("anchor")
    with pytest.raises(ConfigError, match="train.drift: the drift is held by the anchor's strength; set optim.anchor"):
        run(cfg)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_run_holds_its_drift_logs_the_scale_and_replays_to_the_live_weights(tiny_llama_dir, tmp_path):
    out = tmp_path / "held"
    target = 1e-4  # far below what lr 0.3 reaches: every validation is over it, so the anchor must strengthen
    summary = run(config(tiny_llama_dir, out, drift={"kl": target}))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scales = [r["anchor_scale"] for r in rows]
    over = [r["val_kl_exact"] > target for r in rows]
    assert any(over)
    for before, after, was_over in zip([1.0] + scales, scales, over):  # each validation moves the scale its way
        assert (after > before) if was_over else (after < before)
    kept = {r["step"]: r["val_kl_exact"] for r in rows}
    assert summary["best_step"] == 0 or kept[summary["best_step"]] <= target  # the best step lies within the drift
    lines = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()[1:]]
    assert [line.get("anchor_scale", 1.0) for line in lines[1:]] == scales[:-1]  # step k+1 ran with k's scale
    _, loaded, _ = rebuild(out, step="last")
    assert loaded.space.fingerprint() == summary["final_fingerprint"]


def test_without_a_drift_target_the_log_has_no_scale(tiny_llama_dir, tmp_path):
    out = tmp_path / "free"
    run(config(tiny_llama_dir, out, steps=2))
    assert all("anchor_scale" not in line for line in (out / "trajectory.jsonl").read_text().splitlines())
