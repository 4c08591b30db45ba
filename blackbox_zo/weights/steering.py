"""A residual-stream steering space: one vector added after each chosen decoder layer, tuned instead of weights.

Rewards of generated text react to directions in the residual stream (ActAdd, Turner et al. 2023): a vector of
hidden_size numbers added after a middle layer moves sentiment or style, and a random direction among those few
numbers changes the output far more than one spread over every weight does.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from blackbox_zo.weights.params import ParamSpace
from blackbox_zo.weights.population import reads_own_offsets, row_offsets
from blackbox_zo.weights.spaces import DEFAULT_INIT_TEXT

STEER = "steer"  # the parameter's name on each steered layer: `model.layers.10.steer`
# a vector's unit is 1/GAIN of its layer's typical coordinate size, so the engine's default radius (eps 1e-3) moves
# each coordinate by 10 % of that size and the default step (lr 3e-4) by 3 %: the settings that raised rewards on
# our development prompts (radius 10 % beat 5 %; 20 % raised them too but the text turned repetitive), with no
# Spec setting of its own
GAIN = 100.0


_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("blackbox_zo_steering_off", default=False)


@contextlib.contextmanager
def steering_off() -> Iterator[None]:
    """Inside the block every steering vector is skipped, so a steered model computes as its base weights do
    (the untuned model, read without a second copy; nothing is written)."""
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks: `model.layers` (Llama, Mistral, Qwen), `transformer.h` (GPT-2), ..."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    raise ValueError(f"{type(model).__name__}: found no decoder layers (looked for model.layers, transformer.h, ...)")


def default_layers(num_layers: int) -> list[int]:
    """A third and two thirds of the way up (10 and 20 of 30): on our development prompts two vectors raised VADER
    to 0.720 in 300 s where one after layer 10 reached 0.490 (benchmarks/history/QUALITY.md 0.7)."""
    return sorted({num_layers // 3, (2 * num_layers) // 3})


def _add_steering(module: nn.Module, args, output):
    """Forward hook: hidden <- hidden + scale * steer at every position (output is a tensor or a tuple);
    steer_scale = GAIN x the layer's typical coordinate size."""
    if _OFF.get():
        return None  # steering_off(): the block's own output
    hidden = output[0] if isinstance(output, tuple) else output
    offsets = row_offsets(module.steer, hidden.shape[0])  # [B, H] inside a batched population: each row's member
    steer = module.steer if offsets is None else (module.steer + offsets).unsqueeze(1)
    shift = (steer * module.steer_scale).to(hidden.dtype)
    if isinstance(output, tuple):
        return (output[0] + shift,) + tuple(output[1:])
    return output + shift


def _residual_scales(model: nn.Module, blocks: nn.ModuleList, layers: Sequence[int], ids: Sequence[int]) -> dict:
    """{layer: median per-token norm / sqrt(hidden) of its output on `ids`}: a coordinate's typical size, every
    layer from one forward. The median ignores the first token and the few massive-activation coordinates that
    dominate an RMS."""
    seen: dict[int, torch.Tensor] = {}

    def keep(index):
        return lambda m, a, out: seen.__setitem__(index, (out[0] if isinstance(out, tuple) else out).detach())

    hooks = [blocks[i].register_forward_hook(keep(i)) for i in layers]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([list(ids)], device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    scales = {}
    for i, out in seen.items():
        hidden = out[0, 1:].float() if out.shape[1] > 1 else out[0].float()
        scales[i] = float(hidden.norm(dim=-1).median() / hidden.shape[-1] ** 0.5)
    return scales


def steering_space(
    model: nn.Module,
    tokenizer=None,
    layers: Sequence[int] | None = None,
    init_text: str | None = None,
    **space_kwargs: Any,
) -> tuple[nn.Module, ParamSpace]:
    """Add a zero steering vector after each of `layers` (default: a third and two thirds of the way up) and return
    (model, ParamSpace over those vectors only). The model is changed in place and equals the original until a
    step moves a vector.

    A vector is held in units of 1/GAIN of its layer's typical coordinate size (measured once on `init_text`), so
    one radius suits any model and the Spec defaults suit this space: eps 1e-3 moves each coordinate by 10 % of its
    usual magnitude. The vectors are parameters named `<layer>.steer` (they appear in the model's state_dict);
    base weights are left as they are.
    """
    blocks = layer_list(model)
    given = default_layers(len(blocks)) if layers is None else [int(i) for i in layers]
    layers = [i % len(blocks) for i in given]  # -1: the last layer
    if not given or any(not -len(blocks) <= i < len(blocks) for i in given) or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct indexes of the model's {len(blocks)} decoder layers, got {given}")
    if tokenizer is None:
        raise ValueError("steering_space needs the tokenizer, to measure each layer's scale on init_text")
    taken = [i for i in layers if hasattr(blocks[i], STEER)]
    if taken:  # checked before anything is added, so a refused call leaves the model as it was
        raise ValueError(f"decoder layer {taken[0]} already has a steering vector")
    ids = tokenizer(init_text or DEFAULT_INIT_TEXT)["input_ids"]
    scales = _residual_scales(model, blocks, layers, ids)  # measured before the hooks exist: the base model's
    hidden = next(model.parameters())
    for i in layers:
        block, scale = blocks[i], GAIN * scales[i]
        vector = reads_own_offsets(nn.Parameter(torch.zeros(model.config.hidden_size, device=hidden.device)))
        block.register_parameter(STEER, vector)
        block.register_buffer("steer_scale", torch.tensor(scale, device=hidden.device), persistent=False)
        block.register_forward_hook(_add_steering)
    tensors = {n: p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == STEER}
    return model, ParamSpace(tensors, module=model, small=True, **space_kwargs)
