"""`load_tuned`: the tuned model of a run directory, a plain checkpoint, or a steering / prefix export.

Exports that no plain checkpoint can hold (running/small_export.py) are put back on the base model their manifest
names, so every export of every space loads with one call.
"""

from __future__ import annotations

import json
from pathlib import Path

from blackbox_zo.running.small_export import MANIFEST
from blackbox_zo.setup.run_files import is_run_folder


def load_tuned(run_or_export: str | Path, step: str | int = "best", device: str = "cpu"):
    """(model, tokenizer) of a tuned model: a run directory rebuilt at `step` ('best', 'last' or a number), a plain
    checkpoint (full, LoRA merged, steering folded), or a steering / prefix export put back on its base model."""
    from blackbox_zo.lm.loading import load_model

    where = Path(run_or_export).expanduser()
    if is_run_folder(where):
        from blackbox_zo.running.artifacts import rebuild

        _, loaded, _ = rebuild(where, step)
        return loaded.model.to(device), loaded.tokenizer
    manifest = json.loads((where / MANIFEST).read_text()) if (where / MANIFEST).exists() else {"folded": True}
    if manifest.get("folded", True):
        if not (where / "config.json").exists():
            raise ValueError(f"{where} is neither a run directory (trajectory.jsonl) nor an export (config.json or {MANIFEST})")
        return load_model(where, device=device)
    model, tokenizer = load_model(manifest["base_model"], dtype=manifest.get("dtype", "float32"), device=device)
    from safetensors.torch import load_file

    tensors = load_file(str(where / f"{manifest['space']}.safetensors"))
    if manifest["space"] == "steer":
        return put_back_steering(model, tokenizer, tensors), tokenizer
    return put_back_prefix(model, tensors, manifest.get("init_ids")), tokenizer


def put_back_steering(model, tokenizer, tensors: dict):
    """The base model with its steering hooks again, each vector and scale as exported."""
    import torch

    from blackbox_zo.weights.steering import layer_list, steering_space

    layers = sorted(int(name.split(".")[0]) for name in tensors if name.endswith(".steer"))
    steering_space(model, tokenizer, layers=layers)
    blocks = layer_list(model)
    with torch.no_grad():
        for i in layers:
            blocks[i].steer.copy_(tensors[f"{i}.steer"])
            blocks[i].steer_scale.copy_(tensors[f"{i}.steer_scale"][0])
    return model


def put_back_prefix(model, tensors: dict, init_ids):
    """The base model wrapped in a PrefixLM holding the exported keys and values."""
    from blackbox_zo.weights.spaces import PrefixLM

    count = len([n for n in tensors if n.endswith(".key")])
    dtype = next(model.parameters()).dtype
    keys = [tensors[f"prefix.layers.{i}.key"].to(dtype) for i in range(count)]
    values = [tensors[f"prefix.layers.{i}.value"].to(dtype) for i in range(count)]
    device = next(model.parameters()).device
    return PrefixLM(model, [k.to(device) for k in keys], [v.to(device) for v in values], init_ids).eval()
