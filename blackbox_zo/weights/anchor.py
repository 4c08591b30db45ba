"""The anchor: each step pulls the tuned tensors back toward where they started, theta <- theta - r (theta - theta_0).

Why: evolution strategies wander off-task with large dense moves (arXiv 2604.01499); a decay toward the initial
weights, not toward zero, removes the drift at little cost (arXiv 2605.30148). theta_0 of a weight space is read
from the safetensors checkpoint the model was loaded from, memory-mapped, one tensor at a time, so it holds no
resident copy of the model; tensors the checkpoint lacks (steering vectors, prefixes, LoRA factors: small) are
copied once at the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def checkpoint_files(module: Any) -> list[Path]:
    """The *.safetensors files of the folder `module` was loaded from (config._name_or_path), or []."""
    config = getattr(module, "config", None)
    folder = getattr(config, "_name_or_path", None) or getattr(module, "name_or_path", None)
    if not folder or not Path(folder).is_dir():
        return []
    return sorted(Path(folder).glob("*.safetensors"))


def _base_module(space: Any) -> Any:
    """The transformers model under a space's module (peft and prefix wrappers hold it as base_model / model)."""
    module = getattr(space, "module", None)
    for attr in ("base_model", "model"):
        while module is not None and getattr(module, "config", None) is None and hasattr(module, attr):
            module = getattr(module, attr)
    return module


class Anchor:
    """theta_0 of an in-process space, and `pull(rate)`: theta <- theta - rate * (theta - theta_0).

    A tensor whose values equal those of the same name in the model's safetensors checkpoint is read from it
    (memory-mapped) at every pull: disk reads of the tuned tensors per step (from the page cache after the first),
    one tensor of float32 scratch at a time. Any other tensor keeps a copy of its start (`resident_bytes` counts
    them). A subspace (theta = theta_0 + A z, z_0 = 0) pulls z toward 0: z <- (1 - rate) z, exactly.
    """

    def __init__(self, space: Any):
        self.space = space
        self.subspace = hasattr(space, "z") and hasattr(space, "decay")
        self.stored: dict[str, torch.Tensor] = {}  # name -> theta_0 kept in memory
        self.mapped: dict[str, Any] = {}  # name -> the open safetensors file holding theta_0
        if self.subspace:
            return
        tensors = getattr(space, "tensors", None)
        if not isinstance(tensors, dict):
            raise ValueError(f"the anchor needs an in-process space with its tensors ({type(space).__name__} has none)")
        self._handles = []
        shelf = {}
        for path in checkpoint_files(_base_module(space)):
            from safetensors import safe_open

            handle = safe_open(str(path), framework="pt", device="cpu")
            self._handles.append(handle)
            shelf.update({key: handle for key in handle.keys()})
        for name in tensors:
            current = self._theta(name)
            handle = shelf.get(name)
            if handle is not None and torch.equal(handle.get_tensor(name).to(current.device, current.dtype), current):
                self.mapped[name] = handle
            else:
                self.stored[name] = current.detach().clone()

    @property
    def resident_bytes(self) -> int:
        """Memory the anchor holds: the starts of the tensors not read from the checkpoint."""
        return sum(t.numel() * t.element_size() for t in self.stored.values())

    def _theta(self, name: str) -> torch.Tensor:
        masters = getattr(self.space, "masters", {}) or {}
        return masters.get(name, self.space.tensors[name])

    def start(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """theta_0 of tensor `name`, on the device and dtype of `like`."""
        if name in self.stored:
            return self.stored[name]
        return self.mapped[name].get_tensor(name).to(like.device, like.dtype)

    def pull(self, rate: float) -> None:
        """theta <- theta - rate * (theta - theta_0) for every tuned tensor (master copies too, where kept)."""
        if not rate:
            return
        if self.subspace:
            self.space.decay(1.0 - rate)  # theta - theta_0 = A z: pulling theta pulls z toward 0
            return
        masters = getattr(self.space, "masters", {}) or {}
        with torch.no_grad():
            for name, p in self.space.tensors.items():
                theta = self._theta(name)
                start = self.start(name, theta)
                if theta.dtype == torch.float32:
                    theta.sub_(rate * (theta - start))  # theta <- theta - r (theta - theta_0)
                else:  # low precision without a master: computed in float32, rounded once
                    theta.copy_(theta.float() - rate * (theta.float() - start.float()))
                if name in masters:
                    p.copy_(masters[name])
