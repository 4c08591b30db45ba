"""Fold steering vectors into a plain checkpoint: each becomes the bias of its decoder layer's last projection.

A block's output is its residual input plus the MLP's output, whose last map is affine (W a + b). A vector v
added after the block therefore equals v added to that bias: h + W a + b + v. Llama gets the bias from
`mlp_bias: true` (all its MLP projections then carry one: zeros except the steered ones); GPT-2's c_proj has one
already. Other architectures (Mistral, Qwen2, Gemma, ...) have no bias at that point: `FOLDS` lists what can.
"""

from __future__ import annotations

import torch
from torch import nn

from blackbox_zo.weights.steering import STEER, layer_list

# model_type -> (the block's last projection before the residual sum, the config flag that gives it a bias, the
# other projections that flag also gives a bias: they get zeros)
FOLDS = {
    "llama": ("mlp.down_proj", "mlp_bias", ("mlp.gate_proj", "mlp.up_proj")),
    "gpt2": ("mlp.c_proj", None, ()),
}


class NotFoldable(ValueError):
    """The model's architecture has no bias where a steering vector is added (see FOLDS)."""


def steered_layers(model: nn.Module) -> dict[int, torch.Tensor]:
    """{layer index: the vector its hook adds, steer x steer_scale, in float32} for every steered decoder layer."""
    return {i: (block.steer.detach().float() * block.steer_scale.float()).cpu()
            for i, block in enumerate(layer_list(model)) if hasattr(block, STEER)}


def folded_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """(the base model's state dict with every steering vector folded into a bias, the config changes it needs).

    The steering parameters themselves are left out, so `from_pretrained` builds the plain architecture."""
    kind = getattr(model.config, "model_type", type(model).__name__)
    if kind not in FOLDS:
        raise NotFoldable(f"a {kind} model has no bias after its MLP to fold a steering vector into "
                          f"(foldable: {', '.join(FOLDS)})")
    target, flag, zero_biased = FOLDS[kind]
    names = {id(m): n for n, m in model.named_modules()}
    blocks = layer_list(model)
    state = {n: t for n, t in model.state_dict().items() if n.rsplit(".", 1)[-1] != STEER}
    dtype = next(model.parameters()).dtype
    if flag and not getattr(model.config, flag, False):
        for block in blocks:  # the flag gives every listed projection a bias: exact zeros change nothing
            for path in (target, *zero_biased):
                out_features = block.get_submodule(path).weight.shape[0]
                state[f"{names[id(block)]}.{path}.bias"] = torch.zeros(out_features, dtype=dtype)
    for i, shift in steered_layers(model).items():
        key = f"{names[id(blocks[i])]}.{target}.bias"
        state[key] = (state[key].float().cpu() + shift).to(dtype)  # b <- b + steer * steer_scale
    return state, ({flag: True} if flag else {})
