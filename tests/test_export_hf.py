"""Steering and prefix exports load anywhere: a folded steering export is a plain checkpoint that
`AutoModelForCausalLM.from_pretrained` loads with the tuned model's greedy answers; `bz.load_tuned` loads the rest."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

import blackbox_zo as bz
from blackbox_zo.running.small_export import MANIFEST, save_small_space
from blackbox_zo.weights.steering import layer_list, steering_space

PROMPTS = ["The quick brown fox", "What is the capital of France?", "This movie was"]


def greedy(model, tok, n: int = 8) -> list[list[int]]:
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def run_config(kind: str, name: str) -> SimpleNamespace:
    """The parts of a RunConfig an export reads."""
    return SimpleNamespace(space=SimpleNamespace(kind=kind), model=SimpleNamespace(name=name, dtype="float32"))


def steer_randomly(model, tok, layers):
    """Steering vectors of a few typical coordinate sizes: large enough to change the greedy answers."""
    model, space = steering_space(model, tok, layers=layers)
    torch.manual_seed(1)
    with torch.no_grad():
        for block in layer_list(model):
            if hasattr(block, "steer"):
                block.steer.copy_(torch.randn_like(block.steer) * 0.03)
    return model, space


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_steering_export_is_a_plain_checkpoint_with_the_same_answers(fixture, request, tmp_path):
    model, tok = request.getfixturevalue(fixture)
    base = greedy(model, tok)
    model, space = steer_randomly(model, tok, layers=[0, 1])
    tuned = greedy(model, tok)
    assert tuned != base  # the vectors matter, so equal answers below say the fold is right
    save_small_space(run_config("steer", "unused"), SimpleNamespace(model=model, tokenizer=tok, space=space), tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert not any(n.endswith("steer") for n, _ in plain.named_parameters())
    assert greedy(plain, tok) == tuned
    assert json.loads((tmp_path / MANIFEST).read_text())["folded"] is True
    again, again_tok = bz.load_tuned(tmp_path)
    assert greedy(again, again_tok) == tuned


def test_unfoldable_steering_and_prefix_load_through_load_tuned(tiny_llama_dir, tmp_path):
    """A Qwen2-like model has no bias after its MLP: its export holds the vectors and names the base model."""
    from blackbox_zo.lm import load_model
    from blackbox_zo.weights.spaces import prefix_space

    model, tok = load_model(tiny_llama_dir)
    model.config.model_type = "qwen2"  # what the fold looks at: the architecture has no bias to fold into
    model, space = steer_randomly(model, tok, layers=[1])
    tuned = greedy(model, tok)
    save_small_space(run_config("steer", str(tiny_llama_dir)), SimpleNamespace(model=model, tokenizer=tok, space=space),
                     tmp_path / "steer")
    manifest = json.loads((tmp_path / "steer" / MANIFEST).read_text())
    assert manifest["folded"] is False and "qwen2" in manifest["not_folded"]
    again, again_tok = bz.load_tuned(tmp_path / "steer")
    assert greedy(again, again_tok) == tuned

    model, tok = load_model(tiny_llama_dir)
    wrapped, space = prefix_space(model, tok, num_tokens=3)
    with torch.no_grad():
        for p in space.tensors.values():
            p.add_(torch.randn_like(p))
    tuned = greedy(wrapped, tok)
    save_small_space(run_config("prefix", str(tiny_llama_dir)), SimpleNamespace(model=wrapped, tokenizer=tok, space=space),
                     tmp_path / "prefix")
    again, again_tok = bz.load_tuned(tmp_path / "prefix")
    assert greedy(again, again_tok) == tuned


def test_load_tuned_refuses_a_folder_that_is_neither(tmp_path):
    with pytest.raises(ValueError, match="neither a run directory"):
        bz.load_tuned(tmp_path)


def test_a_steering_run_exports_a_checkpoint_that_answers_as_the_run(tiny_llama_dir, tmp_path):
    from blackbox_zo.running.run import run
    from tests.test_cli_errors import config

    cfg = config(tiny_llama_dir, tmp_path / "run", space={"kind": "steer", "steer_layers": [1]}, export=True)
    cfg["optim"] = {"lr": 0.5, "eps": 0.05, "seed": 3}
    summary = run(cfg, progress=False)
    tuned, tok = bz.load_tuned(tmp_path / "run")  # rebuilt from base + trajectory at the best step
    plain = AutoModelForCausalLM.from_pretrained(summary["exported"]).eval()
    assert greedy(plain, tok) == greedy(tuned, tok)


@pytest.mark.slow
def test_embedded_model_steering_export_answers_as_tuned(tmp_path):
    from blackbox_zo.lm import load_model

    model, tok = load_model("embedded")
    model, space = steer_randomly(model, tok, layers=None)
    tuned = greedy(model, tok)
    save_small_space(run_config("steer", "embedded"), SimpleNamespace(model=model, tokenizer=tok, space=space), tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert greedy(plain, tok) == tuned
