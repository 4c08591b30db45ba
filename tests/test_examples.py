"""The objective examples run end to end on a tiny random Llama, and report what an independent check computes.

Tests marked slow run the same mains on the embedded SmolLM2-135M-Instruct for 1 step.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
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


def sst2_accuracy(model, tok, data, k: int, val_size: int, calibrate: str | None = None) -> float:
    """Validation accuracy of `model` on the example's SST-2 sample, computed here without the example."""
    from blackbox_zo.lm import TransformersLM
    from objectives.recipes import classification

    task = classification("sst2", data=str(data), k=k, val_size=val_size, seed=0, calibrate=calibrate)
    return task["val_objective"].evaluate(TransformersLM(model, tok, batch_size=32), task["val"]).value


def mean_words(texts) -> float:
    return sum(len(t.split()) for t in texts) / len(texts)


def test_sst2_without_data_explains_where_to_get_it(tmp_path, capsys):
    example = load_example("sst2_accuracy")
    assert example.main(["--data", str(tmp_path / "missing")]) is None
    out = capsys.readouterr().out
    assert "SST-2 not found at" in out and "train.tsv" in out and "--data" in out
    assert example.main([]) is None  # no default data path: it says so instead of guessing one
    assert "SST-2 not found (no --data given)" in capsys.readouterr().out


def test_sst2_accuracy_runs(tiny_llama, sst2_dir, capsys):
    model, tok = tiny_llama
    start = sst2_accuracy(model, tok, sst2_dir, k=2, val_size=6)
    r = load_example("sst2_accuracy").main(
        ["--data", str(sst2_dir), "--steps", "2", "--k", "2", "--val-size", "6", "--batch", "4"], model, tok)
    # the example reports the accuracy of the weights it starts from and of those it leaves (tuned in place)
    assert r["before"] == start
    assert r["after"] == sst2_accuracy(model, tok, sst2_dir, k=2, val_size=6)
    assert r["steps"] == 2 and r["tuned"] == model.config.hidden_size  # the final norm only
    assert "validation accuracy: before" in capsys.readouterr().out


@pytest.mark.parametrize("space, tuned", [("lora", 2 * (8 * 32 + 32 * 8 + 8 * 32 + 16 * 8)),  # q, v: A and B
                                          ("prefix", 2 * 2 * (2 * 5 * 8))])  # layers x (k, v) x heads x 5 x 8
def test_sst2_accuracy_other_spaces(tiny_llama, sst2_dir, space, tuned):
    model, tok = tiny_llama
    start = sst2_accuracy(model, tok, sst2_dir, k=2, val_size=4)
    r = load_example("sst2_accuracy").main(
        ["--data", str(sst2_dir), "--space", space, "--steps", "2", "--k", "2", "--val-size", "4", "--batch", "4"],
        model, tok)
    assert r["tuned"] == tuned
    if space == "lora":  # LoRA B starts at zero: the adapted model starts as the plain one
        assert r["before"] == start


def test_sst2_yaml_runs_through_the_cli_runner(tiny_llama, sst2_dir, tmp_path):
    from blackbox_zo.running.run import run

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
    assert summary["val_start"] == sst2_accuracy(model, tok, sst2_dir, k=2, val_size=4)
    assert summary["steps"] == 2 and summary["tuned_elements"] == model.config.hidden_size


def test_reward_vader_runs(tiny_llama, capsys):
    model, tok = tiny_llama
    r = load_example("reward_vader").main(["--steps", "2", "--max-new-tokens", "4"], model, tok)
    assert len(r["samples"]) == 4 and all(isinstance(s, str) for s in r["samples"])
    assert r["tuned"] == 2 * model.config.hidden_size  # the recommended recipe: two steering vectors
    assert "mean VADER compound on held-back prompts: before" in capsys.readouterr().out


def test_reward_vader_without_steps_scores_the_base_models_greedy_answers(tiny_llama):
    """lr 0 leaves the (zero) steering vectors alone: before == after, and the samples are the base model's greedy ones."""
    from blackbox_zo.lm import TransformersLM

    model, tok = tiny_llama
    example = load_example("reward_vader")
    base = TransformersLM(model, tok, batch_size=16).generate(example.HELD_OUT_PROMPTS, max_new_tokens=4, seed=0)
    r = example.main(["--steps", "1", "--lr", "0", "--max-new-tokens", "4"], model, tok)
    assert r["after"] == r["before"]
    assert r["samples"] == base


def test_preference_judge_runs(tiny_llama, capsys):
    mod = load_example("preference_judge")
    assert mod.shorter("", "one two", "one two three") == 1 and mod.shorter("", "a b", "c d") == 0
    model, tok = tiny_llama
    r = mod.main(["--steps", "2", "--max-new-tokens", "4", "--samples", "1"], model, tok)
    assert r["before"] == mean_words(r["base"]) and r["after"] == mean_words(r["tuned"])
    verdicts = [mod.shorter("", t, b) for t, b in zip(r["tuned"], r["base"])]  # +1: the tuned answer wins
    assert r["win_rate"] == (sum(v > 0 for v in verdicts) + 0.5 * verdicts.count(0)) / len(verdicts)
    assert "judge win-rate of tuned vs base" in capsys.readouterr().out


def test_preference_judge_without_steps_ties_with_base(tiny_llama):
    """Same weights and same sampling seed: tuned == base, so every verdict is a tie (win-rate 0.5)."""
    model, tok = tiny_llama
    r = load_example("preference_judge").main(["--steps", "1", "--lr", "0", "--max-new-tokens", "4"], model, tok)
    assert r["tuned"] == r["base"] and r["win_rate"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name, argv", [
    ("sst2_accuracy", ["--steps", "1", "--k", "4", "--val-size", "8", "--batch", "8"]),
    ("reward_vader", ["--steps", "1", "--max-new-tokens", "6"]),
    ("preference_judge", ["--steps", "1", "--max-new-tokens", "6", "--samples", "1"]),
])
def test_examples_on_the_embedded_model(name, argv, request):
    if name == "sst2_accuracy":
        argv = argv + ["--data", str(request.getfixturevalue("sst2_data"))]
    r = load_example(name).main(argv)
    if name == "sst2_accuracy":  # the reported accuracy is the task's own, measured on the shipped model, 1 step on its norm
        from blackbox_zo.lm import TransformersLM, load_model
        from objectives.recipes import classification

        task = classification("sst2", data=argv[argv.index("--data") + 1], k=4, val_size=8, seed=0)
        model, tok = load_model("embedded")
        base = task["val_objective"].evaluate(TransformersLM(model, tok, batch_size=32), task["val"]).value
        assert r["before"] == base and r["after"] * 8 == round(r["after"] * 8)
        assert r["steps"] == 1 and r["tuned"] == model.model.norm.weight.numel()
    else:  # the real model answers every held-back prompt with some text
        texts = r["samples"] if name == "reward_vader" else r["tuned"]
        assert texts and all(t.strip() for t in texts)


def test_sst2_top_layers_yaml_tunes_the_top_layer_over_a_cached_trunk(tiny_llama, sst2_dir, tmp_path):
    from blackbox_zo.running.run import run

    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = yaml.safe_load((EXAMPLES / "sst2_top_layers.yaml").read_text())
    assert cfg["objective"]["args"]["train_objective"] == "nll"
    cfg["model"]["name"] = str(tmp_path / "tiny")
    cfg["objective"]["args"].update(data=str(sst2_dir), k=2, val_size=4)
    cfg["space"]["include"] = [r"layers\.1\.", r"^model\.norm\."]  # the tiny model's top layer of 2
    cfg["train"].update(steps=3, batch_size=4, eval_every=3, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    assert summary["steps"] == 3 and summary["trunk_cached_below_layer"] == 1
    assert summary["val_start"] == sst2_accuracy(model, tok, sst2_dir, k=2, val_size=4, calibrate="content_free")


def tensors(folder: Path) -> dict:
    """Every tensor of an export folder's safetensors files, whatever the export's layout."""
    from safetensors.torch import load_file

    return {f"{f.name}:{k}": v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_vader_steer_yaml_tunes_one_steering_vector_and_exports_it(tiny_llama, tmp_path):
    from blackbox_zo.running.cli import main
    from blackbox_zo.running.run import run

    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = yaml.safe_load((EXAMPLES / "vader_steer.yaml").read_text())
    cfg["space"]["steer_layers"] = [0, 1]  # the tiny model has 2 layers (the recipe steers after 10 and 20)
    cfg["model"]["name"] = str(tmp_path / "tiny")
    cfg["objective"]["args"]["max_new_tokens"] = 4
    cfg["train"].update(steps=3, batch_size=2, eval_every=3, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    assert summary["steps"] == 3 and summary["tuned_elements"] == 2 * model.config.hidden_size
    saved = tensors(tmp_path / "run" / "model")
    assert saved  # the run's own export (export: true)
    # export rebuilds the tuned state from base + trajectory alone, bitwise
    assert main(["export", str(tmp_path / "run"), "--step", "last", "--out", str(tmp_path / "last")]) == 0
    rebuilt = tensors(tmp_path / "last")
    assert sorted(rebuilt) == sorted(saved) and all(torch.equal(rebuilt[k], saved[k]) for k in saved)
    # a batched space (the steering default) moves only by its updates, never by perturb/restore drift: the tiny
    # random model's texts score VADER 0, every gradient is 0, and the export must then equal the base's (step 0)
    records = [json.loads(line) for line in (tmp_path / "run" / "trajectory.jsonl").read_text().splitlines()[1:]]
    updated = any(c != 0 for r in records for _, c in r["grad"])
    assert main(["export", str(tmp_path / "run"), "--step", "0", "--out", str(tmp_path / "base")]) == 0
    base = tensors(tmp_path / "base")
    assert all(torch.equal(base[k], saved[k]) for k in saved) == (not updated)



ROOT = EXAMPLES.parent
RUN_CONFIGS = sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name not in ("prefer.yaml", "vllm_vader.yaml"))


@pytest.fixture(scope="module")
def deep_tiny_llama_dir(tokenizer, tmp_path_factory):
    """A random Llama as deep as SmolLM2-135M (30 layers) but 32 wide: configs that name layers 28-29 run unchanged."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=30,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("deep_tiny_llama")
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_every_example_config_is_run_by_a_test():
    """A new examples/*.yaml must join the list below (or have its own runner test)."""
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(RUN_CONFIGS + ["prefer.yaml", "vllm_vader.yaml"])
    assert len(RUN_CONFIGS) == 7


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_example_config_runs_as_shipped_for_two_steps(name, deep_tiny_llama_dir, tmp_path, monkeypatch):
    """Every `blackbox-zo run` example, as shipped (its data included) but for the model and the step count."""
    from blackbox_zo.running.run import run
    from blackbox_zo.setup.relative import relative_to_config

    monkeypatch.chdir(tmp_path)  # not the checkout: a relative path means the config's folder, as load_config reads it
    cfg = relative_to_config(yaml.safe_load((EXAMPLES / name).read_text()), EXAMPLES)
    data = cfg["objective"].get("args", {}).get("data")
    assert data is None or (Path(data) / "train.tsv").is_file(), f"{name}: {data} is not shipped"
    cfg["model"]["name"] = str(deep_tiny_llama_dir)
    cfg["train"].update(steps=2, eval_every=min(cfg["train"].get("eval_every", 2), 2), plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    assert summary["steps"] == 2 and (tmp_path / "run" / "trajectory.jsonl").is_file()
    assert summary["val_start"] is not None and summary["val_final"] is not None


def test_prefer_example_is_a_valid_prefer_config():
    """examples/prefer.yaml is served by `blackbox-zo prefer`; tests/test_prefer_browser.py votes 2 steps of it."""
    from blackbox_zo.prefer.config import load_prefer_config

    cfg = load_prefer_config(EXAMPLES / "prefer.yaml")
    assert len(cfg.prompts) == 12 and cfg.steps == 20


@pytest.mark.vllm
def test_vllm_example_config_runs_as_shipped_for_two_steps(tmp_path, monkeypatch):
    """examples/vllm_vader.yaml on the embedded model inside vLLM, for 2 steps (the vLLM venv of CI runs it)."""
    pytest.importorskip("vllm")
    from blackbox_zo.running.run import run

    monkeypatch.chdir(ROOT)
    cfg = yaml.safe_load((EXAMPLES / "vllm_vader.yaml").read_text())
    cfg["train"].update(steps=2, eval_every=2, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    assert summary["steps"] == 2
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 2} and all(isinstance(s["answer"], str) for s in samples)
    assert {"distinct_2", "repeated_token_trigrams"} <= set(summary["text_final"])  # text numbers from vLLM's answers


def test_examples_readme_names_every_example_and_reads_as_a_guide():
    """examples/README.md's table has a row for each example file; no lab-notebook phrasing."""
    import re

    text = (EXAMPLES / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for path in sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*.py")]):
        assert any(f"examples/{path.name}" in row for row in rows), f"examples/README.md has no row for {path.name}"
    assert not re.search(r"\bI (ran|did|used|checked|measured|think|tried)\b|\bmy\b|heavy load|No data ships", text)
    for target in re.findall(r"\]\(([^)#\s]+)", text):  # links work from the page's folder
        assert target.startswith("http") or (EXAMPLES / target).exists(), target
