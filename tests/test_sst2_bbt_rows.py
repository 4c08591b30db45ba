"""The bbt rows of benchmarks/quality_sst2.py over the final norm: prompt options, early stop, the cached trunk.

Run on the tiny Llama and a generated SST-2-shaped folder, so they check the plumbing, not a quality figure.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import quality_sst2  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TEMPLATE = r"Review: {sentence}\nSentiment:"  # as typed on a command line: a backslash and an n


@pytest.fixture
def sst2_folder(tmp_path):
    """240 rows per split (120 per class): enough for the 200-sentence train-dev split beside k-shot samples."""
    words = {0: ["dull", "boring", "awful", "slow"], 1: ["great", "warm", "lovely", "bright"]}
    rows = "sentence\tlabel\n" + "".join(f"a {words[i % 2][i % 4]} film number {i} \t{i % 2}\n" for i in range(240))
    for split in ("train.tsv", "validation.tsv"):
        (tmp_path / split).write_text(rows)
    return tmp_path


def run_rows(folder, model_dir, out, *extra):
    argv = ["--data", str(folder), "--model", str(model_dir), "--eval-set", "train-dev", "--k", "2",
            "--template", TEMPLATE, "--label-words", "negative,positive", "--calibrate", "content_free",
            "--bbt-space", "norm", "--trunk-cache", "--margin-cap", "1", "--out", str(out), *extra]
    quality_sst2.main(argv)
    return json.loads(Path(out).read_text())


def test_template_and_label_words_replace_mezo_prompt():
    args = quality_sst2.parse_args(["--data", "x", "--template", TEMPLATE, "--label-words", "bad,good"])
    spec = quality_sst2.task_spec(args)
    assert spec["template"] == "Review: {sentence}\nSentiment:" and spec["label_words"] == {"0": "bad", "1": "good"}
    assert quality_sst2.task_spec(quality_sst2.parse_args(["--data", "x"])) == "sst2"


def test_norm_row_stops_after_bbt_steps_and_scores_over_the_cached_trunk(sst2_folder, tiny_llama_dir, tmp_path):
    result = run_rows(sst2_folder, tiny_llama_dir, tmp_path / "r.json", "--rows", "bbt_cma,bbt_es",
                      "--subspace", "4", "--bbt-steps", "2", "--budget", "600", "--space-seeds", "1")
    runs = {r["row"]: r for r in result["runs"]}
    assert set(runs) == {"bbt_cma", "bbt_es"}, result["runs"]
    for r in runs.values():  # 2 generations despite a 600 s budget; only the final norm after 2 frozen layers
        assert (r["steps"], r["trunk_cache"], r["tuned_elements"], r["space"]) == (2, 2, 4, "norm")
        assert r["margin_cap"] == 1.0 and r["train_objective_first5"] <= 1.0  # capped margins average to <= cap


def test_zero_generations_leave_the_zero_shot_accuracy(sst2_folder, tiny_llama_dir, tmp_path):
    """No step: the bbt row over a cached trunk scores exactly what the calibrated zero-shot row scores."""
    result = run_rows(sst2_folder, tiny_llama_dir, tmp_path / "z.json", "--rows", "calibrated_cf,bbt_cma",
                      "--subspace", "4", "--bbt-steps", "0", "--space-seeds", "1")
    acc = {r["row"]: r["accuracy"] for r in result["runs"]}
    assert result["runs"][-1]["steps"] == 0
    assert acc["bbt_cma"] == acc["calibrated_cf"]


def run_example_on_tiny(name, folder, model_dir, tmp_path) -> dict:
    """An SST-2 example config, shrunk to the tiny Llama and a generated folder, run for 2 CMA-ES generations."""
    from blackbox_zo.running.run import run
    from blackbox_zo.setup.config import load_config

    cfg = yaml.safe_load((EXAMPLES / name).read_text())
    assert (cfg["space"]["subspace"], cfg["optim"]["optimizer"], cfg["train"]["steps"]) == (10, "cma", 5)
    cfg["model"]["name"] = str(model_dir)
    cfg["objective"]["args"].update(data=str(folder), k=4, val_size=8)
    cfg["train"].update(steps=2, batch_size=8, eval_every=1)
    cfg["output"] = str(tmp_path / "run")
    summary = run(load_config(cfg), progress=False)
    assert summary["steps"] == 2 and summary["tuned_elements"] == 10 and summary["objective"] == "label_word_margin"
    assert summary["trunk_cached_below_layer"] == 2  # the tiny Llama's 2 layers are all frozen: only the norm runs
    return cfg


def test_the_prompt_norm_example_tunes_a_norm_subspace_over_the_whole_cached_trunk(sst2_folder, tiny_llama_dir, tmp_path):
    cfg = run_example_on_tiny("sst2_prompt_norm.yaml", sst2_folder, tiny_llama_dir, tmp_path)
    assert cfg["objective"]["args"]["task"]["template"] == "Review: {sentence}\nSentiment:"


def test_task_file_names_an_ensemble_and_calibrated_ref_reads_it(sst2_folder, tiny_llama_dir, tmp_path):
    spec = {"template": "Review: {sentence}\nSentiment:", "label_words": {"0": "negative", "1": "positive"},
            "ensemble": [{"template": "{sentence} It was", "label_words": {"0": "bad", "1": "good"}}]}
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(spec))
    assert quality_sst2.task_spec(quality_sst2.parse_args(["--data", "x", "--task", str(path)])) == {"name": "sst2", **spec}
    with pytest.raises(SystemExit, match="drop --template"):
        quality_sst2.task_spec(quality_sst2.parse_args(["--data", "x", "--task", str(path), "--template", TEMPLATE]))
    argv = ["--data", str(sst2_folder), "--model", str(tiny_llama_dir), "--eval-set", "train-dev", "--k", "2",
            "--task", str(path), "--rows", "calibrated_ref", "--seeds", "2", "--out", str(tmp_path / "r.json")]
    quality_sst2.main(argv)
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1], runs
    for r in runs:  # the row's accuracy is the reference reading; the first prompt alone is read beside it
        assert r["accuracy"] == r["accuracy_by_calibration"]["reference"]
        assert {"none", "content_free", "first_prompt/none", "first_prompt/reference"} <= set(r["accuracy_by_calibration"])


def test_the_prompt_ensemble_example_runs_and_matches_the_task_file(sst2_folder, tiny_llama_dir, tmp_path):
    cfg = run_example_on_tiny("sst2_prompt_ensemble.yaml", sst2_folder, tiny_llama_dir, tmp_path)
    task = {k: v for k, v in cfg["objective"]["args"]["task"].items() if k != "name"}
    assert task == json.loads((EXAMPLES / "sst2_prompts.json").read_text())  # the benchmark reads the same prompts
    assert cfg["objective"]["args"]["calibrate"] == "reference" and len(task["ensemble"]) == 4


def test_builtin_topics_run_through_the_same_rows(tiny_llama_dir, tmp_path):
    argv = ["--data", "builtin:topics", "--model", str(tiny_llama_dir), "--eval-set", "all", "--k", "2",
            "--task", "topics", "--rows", "zero_shot,calibrated_ref", "--seeds", "1", "--out", str(tmp_path / "r.json")]
    quality_sst2.main(argv)
    result = json.loads((tmp_path / "r.json").read_text())
    assert {r["row"] for r in result["runs"]} == {"zero_shot", "calibrated_ref"}, result["runs"]
    assert all("error" not in r for r in result["runs"])
    assert len(quality_sst2.eval_examples(quality_sst2.parse_args(["--data", "builtin:topics", "--eval-set", "all"]))) == 288
