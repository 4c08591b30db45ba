"""The export of the small spaces: steering vectors folded into a plain checkpoint, or tensors beside a manifest.

A steering run on a foldable architecture (weights/fold.py: Llama, GPT-2) exports a plain Hugging Face checkpoint
with each vector folded into a bias: `AutoModelForCausalLM.from_pretrained` loads it and answers as the tuned model.
Elsewhere (Mistral, Qwen2, Gemma, ...) and for prefixes, which no plain checkpoint can hold, the export holds the
tuned tensors and `blackbox_zo.json` naming the base model: `bz.load_tuned(export)` (running/tuned.py) puts them
back on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "blackbox_zo.json"  # what the export holds and, when not folded, the base model it applies to


def save_small_space(cfg: Any, loaded: Any, out: str | Path) -> Path:
    """Write a steering or prefix run's export to `out`: folded into a plain checkpoint where the architecture
    allows, else the tuned tensors beside a manifest that names the base model."""
    from safetensors.torch import save_file

    from blackbox_zo.weights.fold import NotFoldable, folded_state_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"space": cfg.space.kind, "base_model": base_name(cfg.model.name), "dtype": cfg.model.dtype}
    if cfg.space.kind == "steer":
        try:
            state, config_changes = folded_state_dict(loaded.model)
        except NotFoldable as e:
            manifest["not_folded"] = str(e)
        else:
            save_folded(loaded.model, loaded.tokenizer, state, config_changes, out)
            (out / MANIFEST).write_text(json.dumps({**manifest, "folded": True}, indent=2))
            return out
        from blackbox_zo.weights.steering import STEER, layer_list

        tensors = {}
        for i, block in enumerate(layer_list(loaded.model)):
            if hasattr(block, STEER):
                tensors[f"{i}.steer"] = block.steer.detach().float().cpu().contiguous()
                tensors[f"{i}.steer_scale"] = block.steer_scale.detach().float().cpu().reshape(1)
    else:
        tensors = loaded.space.state_dict()
        manifest["init_ids"] = loaded.model.init_ids
    save_file(tensors, str(out / f"{cfg.space.kind}.safetensors"))
    loaded.tokenizer.save_pretrained(out)
    (out / MANIFEST).write_text(json.dumps({**manifest, "folded": False}, indent=2))
    return out


def base_name(name: str | None) -> str:
    """The base model as the manifest names it: 'embedded', a hub id, or an absolute directory."""
    if name in (None, "embedded"):
        return "embedded"
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else str(name)


def save_folded(model, tokenizer, state: dict, config_changes: dict, out: Path) -> None:
    """save_pretrained with the folded state dict, the config changed only while it is written."""
    before = {k: getattr(model.config, k, None) for k in config_changes}
    for k, v in config_changes.items():
        setattr(model.config, k, v)
    try:
        model.save_pretrained(out, state_dict=state, safe_serialization=True)
    finally:
        for k, v in before.items():
            setattr(model.config, k, v)
    tokenizer.save_pretrained(out)


