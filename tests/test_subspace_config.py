"""Configs with `space.subspace` and `optim.optimizer: cma`: they run, resume bitwise, export and replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from blackbox_zo.running.cli import main
from blackbox_zo.running.run import run
from blackbox_zo.setup.config import ConfigError, load_config


def config(model_dir, out, steps=2, **over):
    cfg = {
        "model": {"name": str(model_dir), "batch_size": 8},
        "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
        "space": {"kind": "prefix", "prefix_tokens": 2, "subspace": 12, "subspace_seed": 1},
        "optim": {"optimizer": "cma", "n": 4, "eps": 0.5, "seed": 3},
        "train": {"steps": steps, "batch_size": 8, "eval_every": 1, "plot": False},
        "output": str(out),
    }
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def test_a_cma_run_on_a_prefix_subspace_resumes_exports_and_replays(tiny_llama_dir, tmp_path):
    whole = run(config(tiny_llama_dir, tmp_path / "whole"), progress=False)
    assert whole["steps"] == 2 and whole["tuned_elements"] == 12
    lines = (tmp_path / "whole" / "trajectory.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"popsize":4' in lines[0]
    run(config(tiny_llama_dir, tmp_path / "split", steps=1), progress=False)
    resumed = run(config(tiny_llama_dir, tmp_path / "split"), resume=True, progress=False)
    assert resumed["final_fingerprint"] == whole["final_fingerprint"]
    assert main(["export", str(tmp_path / "whole"), "--step", "last", "--out", str(tmp_path / "a")]) == 0
    assert main(["export", str(tmp_path / "split"), "--step", "last", "--out", str(tmp_path / "b")]) == 0
    assert main(["export", str(tmp_path / "whole"), "--step", "0", "--out", str(tmp_path / "base")]) == 0
    a, b = load_file(tmp_path / "a" / "prefix.safetensors"), load_file(tmp_path / "b" / "prefix.safetensors")
    base = load_file(tmp_path / "base" / "prefix.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != base[k]).any() for k in a)  # CMA moved the prefix through z


def test_mezo_population_runs_on_the_same_subspace(tiny_llama_dir, tmp_path):
    s = run(config(tiny_llama_dir, tmp_path / "es", optim={"optimizer": "sgd", "estimator": "population", "n": 2,
                                                              "eps": 0.3, "lr": 0.1}), progress=False)
    assert s["steps"] == 2 and s["tuned_elements"] == 12


@pytest.mark.parametrize("patch, message", [
    ({"space": {"subspace": 0}}, "space.subspace must be an integer >= 1"),
    ({"space": {"subspace": 10 ** 9}}, "space.subspace: subspace dim 1000000000 exceeds"),
    ({"distributed": {"workers": 2}}, "optim.optimizer 'cma' runs in one process"),
])
def test_bad_subspace_settings_are_named(tiny_llama_dir, tmp_path, patch, message):
    cfg = config(tiny_llama_dir, tmp_path / "bad", **patch)
    with pytest.raises(ConfigError, match=message):
        run(load_config(cfg), progress=False)


def test_the_sst2_bbt_example_runs_two_steps(tiny_llama_dir, tmp_path):
    import yaml

    rows = "sentence\tlabel\n" + "".join(f"review {i} \t{i % 2}\n" for i in range(20))
    for split in ("train.tsv", "validation.tsv"):
        (tmp_path / split).write_text(rows)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "sst2_bbt.yaml").read_text())
    assert (cfg["space"]["subspace"], cfg["optim"]["optimizer"], cfg["objective"]["args"]["holdout"]) == (500, "cma", 4)
    cfg["model"]["name"] = str(tiny_llama_dir)
    cfg["objective"]["args"].update(data=str(tmp_path), k=4, holdout=1, val_size=4)
    cfg["space"]["subspace"] = 12  # the tiny model's 5-token prefix has 320 numbers
    cfg["train"].update(steps=2, batch_size=4, eval_every=1, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(load_config(cfg), progress=False)
    assert summary["steps"] == 2 and summary["tuned_elements"] == 12 and summary["objective"] == "label_word_margin"
