"""The objective examples run end to end: each main() on a tiny random Llama for 2 steps returns numbers.

Tests marked slow run the same mains on the embedded SmolLM2-135M-Instruct for 1 step.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sst2_dir(tmp_path):
    """A tiny SST-2-shaped folder: train.tsv and validation.tsv with 'sentence<TAB>label' rows."""
    pos = ["a great film", "wonderful and warm", "I loved it", "a joy to watch", "brilliant acting"]
    neg = ["a dull mess", "boring and slow", "I hated it", "a waste of time", "awful acting"]
    rows = "sentence\tlabel\n" + "".join(f"{s} \t1\n" for s in pos) + "".join(f"{s} \t0\n" for s in neg)
    for split in ("train.tsv", "validation.tsv"):
        (tmp_path / split).write_text(rows)
    return tmp_path


def check_range(value, low, high):
    assert isinstance(value, float) and math.isfinite(value) and low <= value <= high, value


def test_sst2_without_data_explains_where_to_get_it(tmp_path, capsys):
    assert load_example("sst2_accuracy").main(["--data", str(tmp_path / "missing")]) is None
    out = capsys.readouterr().out
    assert "SST-2 not found" in out and "train.tsv" in out and "--data" in out


def test_sst2_accuracy_runs(tiny_llama, sst2_dir, capsys):
    model, tok = tiny_llama
    r = load_example("sst2_accuracy").main(
        ["--data", str(sst2_dir), "--steps", "2", "--k", "2", "--val-size", "6", "--batch", "4"], model, tok)
    check_range(r["before"], 0.0, 1.0)
    check_range(r["after"], 0.0, 1.0)
    assert r["steps"] == 2 and r["tuned"] == model.config.hidden_size  # the final norm only
    assert "validation accuracy: before" in capsys.readouterr().out


@pytest.mark.parametrize("space", ["lora", "prefix"])
def test_sst2_accuracy_other_spaces(tiny_llama, sst2_dir, space):
    model, tok = tiny_llama
    r = load_example("sst2_accuracy").main(
        ["--data", str(sst2_dir), "--space", space, "--steps", "2", "--k", "2", "--val-size", "4", "--batch", "4"],
        model, tok)
    check_range(r["after"], 0.0, 1.0)
    assert r["tuned"] > 0


def test_sst2_yaml_runs_through_the_cli_runner(tiny_llama, sst2_dir, tmp_path):
    from blackbox_zo.run import run

    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = yaml.safe_load((EXAMPLES / "sst2.yaml").read_text())
    assert cfg["objective"]["factory"] == "objectives.recipes:classification"
    cfg["model"]["name"] = str(tmp_path / "tiny")
    cfg["objective"]["args"].update(data=str(sst2_dir), k=2, val_size=4)
    cfg["train"].update(steps=2, batch_size=4, eval_every=1, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    check_range(summary["val_start"], 0.0, 1.0)
    check_range(summary["val_final"], 0.0, 1.0)
    assert summary["steps"] == 2 and summary["tuned_elements"] == model.config.hidden_size


def test_reward_vader_runs(tiny_llama, capsys):
    model, tok = tiny_llama
    r = load_example("reward_vader").main(["--steps", "2", "--max-new-tokens", "4", "--samples", "1"], model, tok)
    check_range(r["before"], -1.0, 1.0)
    check_range(r["after"], -1.0, 1.0)
    assert len(r["samples"]) == 4 and all(isinstance(s, str) for s in r["samples"])
    assert "mean VADER compound on held-back prompts: before" in capsys.readouterr().out


def test_preference_judge_runs(tiny_llama, capsys):
    mod = load_example("preference_judge")
    assert mod.shorter("", "one two", "one two three") == 1 and mod.shorter("", "a b", "c d") == 0
    model, tok = tiny_llama
    r = mod.main(["--steps", "2", "--max-new-tokens", "4", "--samples", "1"], model, tok)
    check_range(r["before"], 0.0, 4.0 * 4)  # words per answer (a token can decode to several words)
    check_range(r["after"], 0.0, 4.0 * 4)
    check_range(r["win_rate"], 0.0, 1.0)
    assert "judge win-rate of tuned vs base" in capsys.readouterr().out


def test_preference_judge_without_steps_ties_with_base(tiny_llama):
    """Same weights and same sampling seed: tuned == base, so every verdict is a tie (win-rate 0.5)."""
    model, tok = tiny_llama
    r = load_example("preference_judge").main(["--steps", "1", "--lr", "0", "--max-new-tokens", "4"], model, tok)
    assert r["tuned"] == r["base"] and r["win_rate"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name, argv", [
    ("sst2_accuracy", ["--steps", "1", "--k", "4", "--val-size", "8", "--batch", "8"]),
    ("reward_vader", ["--steps", "1", "--max-new-tokens", "6", "--samples", "1"]),
    ("preference_judge", ["--steps", "1", "--max-new-tokens", "6", "--samples", "1"]),
])
def test_examples_on_the_embedded_model(name, argv):
    if name == "sst2_accuracy" and not (Path("../shared/data/sst2") / "train.tsv").exists():
        pytest.skip("SST-2 files not present")
    r = load_example(name).main(argv)
    assert math.isfinite(r["before"]) and math.isfinite(r["after"])
