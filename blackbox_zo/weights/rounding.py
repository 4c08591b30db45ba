"""Seeded stochastic rounding: write theta + delta into a bfloat16 / float16 tensor without float32 masters.

Rounding to nearest loses every update smaller than half a unit in the last place (most ZO steps, in bf16).
Rounding up with probability (x - lo) / (hi - lo) keeps the expectation exact, E[round(x)] = x, and the
random bits come from (seed, tensor name, chunk), so a replay rounds every element the same way, bitwise.
"""

from __future__ import annotations

import torch

from blackbox_zo.weights.noise import CHUNK, chunk_ranges, derive_seed


def _uniform(seed: int, name: str, c: int, n: int, device: torch.device) -> torch.Tensor:
    """n uniforms in [0, 1) for chunk c of tensor `name` under `seed` (drawn whole, like noise chunks)."""
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    gen = torch.Generator(device=gen_device)
    gen.manual_seed(derive_seed(seed, name, "round", c))
    return torch.rand(n, generator=gen, device=gen_device).to(device)


def round_stochastic(x: torch.Tensor, dtype: torch.dtype, u: torch.Tensor) -> torch.Tensor:
    """x (float32) rounded to `dtype`: down to lo or up to hi, up with probability (x - lo) / (hi - lo)."""
    near = x.to(dtype)
    below = near.float() > x  # round-to-nearest went up: the other neighbour is below
    toward = torch.where(below, torch.full_like(near, float("-inf")), torch.full_like(near, float("inf")))
    other = torch.nextafter(near, toward)
    lo = torch.where(below, other, near).float()
    hi = torch.where(below, near, other).float()
    gap = hi - lo
    p_up = torch.where(gap > 0, (x - lo) / gap, torch.zeros_like(x))  # P(hi) = (x - lo) / (hi - lo)
    exact = near.float() == x
    return torch.where(exact | ~torch.isfinite(gap), near, torch.where(u < p_up, hi.to(dtype), lo.to(dtype)))


def add_rounded_(param: torch.Tensor, delta: torch.Tensor, seed: int, name: str) -> None:
    """In place: param <- round(param + delta), stochastically for bf16/fp16 (seeded), exactly for float32.

    `delta` is float32 with param's shape. Chunks of CHUNK elements draw their own bits, as noise does.
    """
    flat, d = param.detach().view(-1), delta.reshape(-1)
    if param.dtype == torch.float32:
        flat.add_(d)
        return
    if param.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"stochastic rounding targets bfloat16/float16 or float32, got {param.dtype} for {name!r}")
    n = flat.numel()
    for c, lo, hi in chunk_ranges(0, n):
        u = _uniform(seed, name, c, min(CHUNK, n - c * CHUNK), flat.device)[: hi - lo]
        flat[lo:hi] = round_stochastic(flat[lo:hi].float() + d[lo:hi], param.dtype, u)
