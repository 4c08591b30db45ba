"""Load a causal language model and its tokenizer from local files only: the embedded default or a directory.

There is no model hub from here, so a hub id fails early with a message that says what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")
EMBEDDED_NAMES = (None, "embedded")


def resolve_dtype(dtype: str):
    """Map a dtype name to the torch dtype; only the three floating types we can tune are accepted."""
    import torch

    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return getattr(torch, dtype)


def resolve_model_dir(name_or_path: str | os.PathLike | None) -> Path:
    """The local directory to load from: the embedded model's cache dir, or the given directory."""
    if name_or_path in EMBEDDED_NAMES:
        from blackbox_zo.lm.embedded import embedded_model_dir

        return embedded_model_dir()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or looks_like_path(str(name_or_path)):
        raise ValueError(f"{str(name_or_path)!r} is not a model directory (it should hold config, "
                         "tokenizer and weights files)")
    raise ValueError(
        f"{str(name_or_path)!r} is not a local directory, and the Hugging Face model hub cannot be "
        "reached from here (no network). Pass the path of a local model directory (config, "
        "tokenizer and weights), or None / 'embedded' for the embedded SmolLM2-135M-Instruct."
    )


def looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id like "org/model"."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def prepare_tokenizer(tokenizer):
    """Left padding (so generation continues right after each prompt) and a pad token (eos if none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | os.PathLike | None = None, dtype: str = "float32",
               device: str = "cpu"):
    """Return `(model, tokenizer)` in eval mode, loaded from local files only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    model_dir = resolve_model_dir(name_or_path)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir, local_files_only=True))
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch_dtype, local_files_only=True)
    model.to(device)
    model.eval()
    return model, tokenizer
