"""Frozen-trunk cache: when only the top decoder layers are tuned, reuse the hidden states below them.

A forward over tokens seen before runs layers[start:] + final norm + head on the cached input of layer
`start`; with the top 2 of 30 layers tuned a ZO step is 7.6x faster (benchmarks/trunk_cache.py). It is dropped as
soon as any trunk tensor (embeddings, layers below `start`) changes in place (its version counter moves:
every in-place op on the tensor or a `detach()` view does, as the engine writes); a write through `p.data`
does not move it, so call `clear()` after one. The first use checks the shortened forward against the full one.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from typing import Iterable

import torch
from torch import nn


class _Reached(Exception):
    """Raised by the pre-hook on layer `start` once its input is captured: nothing above it runs."""


def decoder_layers(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(the decoder body that owns `.layers`, the layer list) of a Hugging Face causal LM."""
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"trunk cache needs a decoder with model.model.layers (Llama, Qwen, Mistral...); "
                         f"{type(model).__name__} has none")
    return body, layers


def layer_index(name: str) -> int | None:
    """N for a tensor named "...layers.N....", None for one outside the decoder layers."""
    match = re.search(r"\blayers\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def first_tuned_layer(model: nn.Module, tuned: Iterable[torch.Tensor]) -> int:
    """Index of the lowest decoder layer holding a tuned tensor (len(layers) when only the final norm is
    tuned); 0 when a tensor outside the layers is tuned (embeddings, a head tied to them): nothing is frozen."""
    body, layers = decoder_layers(model)
    tuned_ptrs = {p.data_ptr() for p in tuned}
    start, found = len(layers), set()
    for name, p in model.named_parameters():
        if p.data_ptr() not in tuned_ptrs:
            continue
        found.add(p.data_ptr())
        index = layer_index(name)
        if index is not None:
            start = min(start, index)
        elif not _is_final_norm(body, p):
            return 0
    return start if found == tuned_ptrs else 0  # a tuned tensor outside the model (a prefix) changes its inputs


def trunk_start(model: nn.Module, tuned: Iterable[torch.Tensor]) -> int | None:
    """The `trunk_cache` a tuned space allows: its first tuned layer, or None when nothing below the tuned
    tensors is frozen or the model has no decoder layer list (GPT-2, a peft wrapper)."""
    try:
        return first_tuned_layer(model, tuned) or None
    except ValueError:
        return None


class TrunkCache:
    """Cached inputs of decoder layer `start`, one entry per token sequence; valid while the trunk is unchanged."""

    def __init__(self, model: nn.Module, start: int, max_bytes: int = 2 ** 30, strict: bool = True):
        body, layers = decoder_layers(model)
        if not 0 < start <= len(layers):
            raise ValueError(f"trunk cache start must be in [1, {len(layers)}] (layers below it are frozen), got {start}")
        self.model, self.body, self.start, self.max_bytes = model, body, start, max_bytes
        self.layers = layers
        # the trunk: embeddings (layer_index None counts as 0) and layers below start, never the final norm
        self._trunk = [p for n, p in body.named_parameters()
                       if (layer_index(n) or 0) < start and not _is_final_norm(body, p)]
        self._versions = self._trunk_versions()
        self._states: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._checked = False
        self.strict, self.disabled = strict, False  # not strict: a model the shortened forward misses runs in full
        self.hits = self.misses = 0

    def logits(self, inputs: dict, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions for left-padded `inputs` (input_ids, attention_mask, position_ids)."""
        if self.disabled:
            return self.model(**inputs, logits_to_keep=keep).logits[:, -keep:]
        if self._trunk_versions() != self._versions:  # a trunk tensor changed in place: states are stale
            self.clear()
            self._versions = self._trunk_versions()
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        lengths = mask.sum(-1).tolist()
        keys = [ids[i, ids.shape[1] - n:].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        # each row's states depend on its own tokens only, so only the rows not cached go through the trunk
        missing = [i for i, k in enumerate(keys) if k not in self._states and k not in keys[:i]]
        fresh = {}
        if missing:
            self.misses += 1
            rows = torch.tensor(missing, device=ids.device)
            states = self._trunk_states({k: v.index_select(0, rows) if torch.is_tensor(v) else v
                                         for k, v in inputs.items()})
            for j, i in enumerate(missing):
                fresh[keys[i]] = states[j, states.shape[1] - lengths[i]:].clone()
                self._store(keys[i], fresh[keys[i]])
        else:
            self.hits += 1
        hidden = self._padded([fresh[k] if k in fresh else self._touch(k) for k in keys], ids.shape[1])
        out = self._top_logits(hidden, inputs, keep)
        if not self._checked:
            full = self.model(**inputs, logits_to_keep=keep).logits[:, -keep:]
            if not torch.allclose(out.float(), full.float(), atol=1e-3, rtol=1e-3):
                message = (f"trunk cache: the shortened forward of {type(self.model).__name__} does not reproduce "
                           f"its logits (max diff {float((out - full).abs().max()):.3g})")
                if self.strict:
                    raise ValueError(message + "; run without trunk_cache")
                warnings.warn(message + "; scoring runs the full model", stacklevel=2)
                self.disabled = True
                self.clear()
                return full
            self._checked = True
        return out

    def _touch(self, key: bytes) -> torch.Tensor:
        self._states.move_to_end(key)  # most recently used
        return self._states[key]

    @staticmethod
    def _padded(rows: list[torch.Tensor], width: int) -> torch.Tensor:
        """[B, width, H] with each row's states at the right end; padded positions are masked, zeros will do."""
        out = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
        for i, row in enumerate(rows):
            out[i, width - row.shape[0]:] = row
        return out

    def clear(self) -> None:
        self._states.clear()
        self._bytes = 0

    def _trunk_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._trunk)  # bumped by every in-place write (perturb, restore, step)

    def _trunk_states(self, inputs: dict) -> torch.Tensor:
        captured = {}

        def capture(module, args, kwargs):
            captured["hidden"] = args[0] if args else kwargs["hidden_states"]
            raise _Reached

        entry = self.layers[self.start] if self.start < len(self.layers) else self.body.norm  # first tuned module
        handle = entry.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.body(**inputs)
        except _Reached:
            pass
        finally:
            handle.remove()
        return captured["hidden"].detach()

    def _top_logits(self, hidden: torch.Tensor, inputs: dict, keep: int) -> torch.Tensor:
        body = self.body
        body.layers = nn.ModuleList(self.layers[self.start:])  # layer_idx / attention types stay with each layer
        try:
            kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
            return self.model(inputs_embeds=hidden, **kwargs, logits_to_keep=keep).logits[:, -keep:]
        finally:
            body.layers = self.layers

    def _store(self, key: bytes, hidden: torch.Tensor) -> None:
        size = hidden.numel() * hidden.element_size()
        while self._states and self._bytes + size > self.max_bytes:
            _, old = self._states.popitem(last=False)  # least recently used first
            self._bytes -= old.numel() * old.element_size()
        if size <= self.max_bytes:
            self._states[key] = hidden
            self._bytes += size


def _is_final_norm(body: nn.Module, p: torch.Tensor) -> bool:
    norm = getattr(body, "norm", None)
    return norm is not None and any(p is q for q in norm.parameters())
