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


def check_hub_model(model_id: str) -> bool:
    """Whether to load a hub id from the local HF cache alone (True) or let transformers ask the hub (False); fails,
    with the fix, when it is neither cached nor on a reachable hub.

    A cached model loads from the cache without asking when the hub cannot be reached: huggingface_hub would retry
    every file (a cached 1-layer model took 3 min to load without a network and without HF_HUB_OFFLINE). Otherwise
    the hub is asked for config.json (a small file), so a missing or gated model fails before anything else loads.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    cached = isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    if cached and (constants.HF_HUB_OFFLINE or not hub_reachable()):
        return True
    if constants.HF_HUB_OFFLINE or not hub_reachable():
        raise ValueError(offline_message(model_id, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE))
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
    return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """One request to the hub's address, no retries: False at once without a network (DNS fails), else <= timeout."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # httpx's ConnectError, TimeoutException, ...: whatever stops the request, the hub is out of reach
        return False
    return True


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
    local = isinstance(source, Path) or check_hub_model(source)  # a hub id: cache only when the hub is out of reach
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source, local_files_only=local))
    # trap: AutoModel's check for a peft adapter does not pass local_files_only on, and without a network it retried
    # adapter_config.json for ~25 s: said again here
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local,
                                                 adapter_kwargs={"local_files_only": local})
    model.to(device)
    model.eval()
    return model, tokenizer
