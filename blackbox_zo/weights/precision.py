"""Is the model exact enough for ZO? Measures restore drift and how much of an update actually lands.

In bf16/fp16, theta + eps z - 2 eps z + eps z is not theta, and lr * g * z ~ 1e-7 mostly rounds away.
float32 masters (ParamSpace(master_weights=True)) fix both; this check shows it.
"""

from __future__ import annotations

import torch

from blackbox_zo.weights.noise import derive_seed, noise_slice


def _norm(tensors) -> float:
    return float(sum(t.double().pow(2).sum() for t in tensors)) ** 0.5


def check_precision(space, eps: float = 1e-3, update: float = 1e-7, seed: int = 0) -> dict:
    """One MeZO cycle on the stored weights (fp32 masters where present), undone afterwards.

    drift_rms: RMS of theta after (+eps z, -2 eps z, +eps z) minus theta before (0 would be exact).
    landed_fraction: ||stored change|| / ||update * z|| after one update (1.0 = the whole update landed).
    """
    s = derive_seed(seed, "precision-check")
    before = space.state_dict()
    numel = sum(t.numel() for t in before.values())
    try:
        for scale in (eps, -2 * eps, eps):  # perturb, flip, restore: MeZO's perturbation moves
            space.apply([(s, scale)])
        drift = _norm(space.state_dict()[n] - before[n] for n in before) / numel**0.5
        space.load_state_dict(before)
        space.apply([(s, update)])
        moved = space.state_dict()
        landed = _norm(moved[n] - before[n] for n in before)
        intended = _norm(update * _direction(space, s, n) for n in before)
        return {"drift_rms": drift, "landed_fraction": landed / intended, "eps": eps, "update": update}
    finally:
        space.load_state_dict(before)


def _direction(space, seed: int, name: str) -> torch.Tensor:
    """z(seed) for one tensor as the space applies it (mask and block-wise selection included)."""
    p = space.tensors[name]
    if space.blockwise and name not in space._names_for(seed):
        return torch.zeros(p.numel())
    z = noise_slice(seed, name, p.numel(), 0, p.numel(), space.noise_kind)
    return z * space.masks[name].cpu() if name in space.masks else z
