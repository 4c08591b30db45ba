"""Load a causal language model and its tokenizer: the embedded default, a local directory, or a hub id.

A hub id ("org/name") loads as transformers loads it: from the local Hugging Face cache, or from the hub when it
can be reached (HF_HUB_OFFLINE=1 keeps it to the cache). Only a model that is in neither fails, saying how to fix it.
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


def resolve_model_dir(name_or_path: str | os.PathLike | None) -> Path | str:
    """Where to load from: the embedded model's cache dir or the given directory (a Path), or a hub id (a str)."""
    if name_or_path in EMBEDDED_NAMES:
        from blackbox_zo.lm.embedded import embedded_model_dir

        return embedded_model_dir()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or looks_like_path(str(name_or_path)):
        raise ValueError(f"{str(name_or_path)!r} is not a model directory (it should hold config, "
                         "tokenizer and weights files)")
    return str(name_or_path)


def looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id like "org/model"."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def check_hub_model(model_id: str) -> None:
    """Fail in about a second, with the fix, when a hub id is neither in the local HF cache nor on a reachable hub.

    A cached config.json answers without the network; otherwise the hub is asked for it (a small file), which
    with HF_HUB_OFFLINE=1 fails at once and without a network after huggingface_hub's retries (~20 s).
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return
    try:
        hf_hub_download(model_id, "config.json")
    except GatedRepoError:
        raise ValueError(f"{model_id!r} is a gated model on the Hugging Face hub: accept its licence on its page, "
                         "then log in (`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{model_id!r} is neither a local directory nor a model on the Hugging Face hub "
                         "(check the spelling; a private model needs `hf auth login` or HF_TOKEN)") from None
    except (LocalEntryNotFoundError, OSError):
        raise ValueError(offline_message(model_id, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE)) from None


def offline_message(model_id: str, offline: bool, cache: str) -> str:
    why = "HF_HUB_OFFLINE is set" if offline else "no network"
    return (f"{model_id!r} is not in the local Hugging Face cache ({cache}) and the hub cannot be reached ({why}): "
            f"download it once where there is a network (`hf download {model_id}`) and point HF_HOME or "
            "HF_HUB_CACHE at that cache, or pass a local model directory, or 'embedded' for the embedded "
            "SmolLM2-135M-Instruct")


def prepare_tokenizer(tokenizer):
    """Left padding (so generation continues right after each prompt) and a pad token (eos if none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | os.PathLike | None = None, dtype: str = "float32",
               device: str = "cpu"):
    """Return `(model, tokenizer)` in eval mode: a local directory from its files only, a hub id as transformers
    finds it (the HF cache, else the hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    source = resolve_model_dir(name_or_path)
    local = isinstance(source, Path)
    if not local:
        check_hub_model(source)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source, local_files_only=local))
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local)
    model.to(device)
    model.eval()
    return model, tokenizer
