"""Seeded, layout-independent random directions: z is regenerated from (seed, tensor name), never stored.

Every tensor's flat index range is cut into fixed chunks of CHUNK elements; chunk c of tensor `name`
under step seed s is drawn whole (its size depends only on the tensor's total numel) from its own
generator seeded by hash(s, name, c). So a backend that holds only a slice of a tensor (a shard, one
block of a fused qkv matrix) regenerates exactly its slice, independent of process, iteration order
and global RNG state. (torch's CPU randn(n) is not a prefix of randn(m): chunks are always drawn whole.)
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

CHUNK = 1 << 20  # elements per independently seeded chunk (4 MiB of float32 scratch at most)
KINDS = ("gaussian", "rademacher")
_POOL: ThreadPoolExecutor | None = None


def derive_seed(*parts: object) -> int:
    """A 63-bit integer from any sequence of ints/strings: the only way seeds are combined here."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator_id(device: torch.device | str) -> str:
    """Names the random stream family; a trajectory records it so replays refuse a different one."""
    dev = torch.device(device)
    return f"torch-{dev.type}-chunk{CHUNK}-v1"


def _draw(n: int, seed: int, kind: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    gen = torch.Generator(device=gen_device)
    gen.manual_seed(seed)
    if kind == "gaussian":  # z ~ N(0, I)
        z = torch.randn(n, generator=gen, device=gen_device, dtype=torch.float32)
    elif kind == "rademacher":  # z_i = +-1 with probability 1/2 each
        z = torch.randint(0, 2, (n,), generator=gen, device=gen_device, dtype=torch.int8)
        z = z.to(torch.float32).mul_(2).sub_(1)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {KINDS}")
    return z.to(device=device, dtype=dtype, non_blocking=True)


def chunk_ranges(start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first, last+1) in canonical flat indices of every chunk overlapping [start, stop)."""
    for c in range(start // CHUNK, (stop - 1) // CHUNK + 1 if stop > start else start // CHUNK):
        yield c, max(start, c * CHUNK), min(stop, (c + 1) * CHUNK)


def noise_slice(
    seed: int,
    name: str,
    numel: int,
    start: int,
    stop: int,
    kind: str = "gaussian",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Elements [start, stop) of the flattened direction of tensor `name` (numel elements in all)."""
    device = torch.device(device)
    parts = []
    for c, lo, hi in chunk_ranges(start, stop):
        z = _draw(min(CHUNK, numel - c * CHUNK), derive_seed(seed, name, c), kind, device, dtype)
        parts.append(z[lo - c * CHUNK : hi - c * CHUNK])
    return torch.cat(parts) if len(parts) != 1 else parts[0]


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, torch.get_num_threads())))
    return _POOL


def add_noise_(
    flat: torch.Tensor,
    seed: int,
    name: str,
    scale: float,
    numel: int | None = None,
    start: int = 0,
    kind: str = "gaussian",
    mask: torch.Tensor | None = None,
) -> None:
    """In place: flat += scale * z[start : start + flat.numel()] (times mask, if given).

    `flat` is a contiguous 1-D view holding canonical elements [start, start + n) of tensor `name`,
    whose canonical (Hugging Face) form has `numel` elements (default: start + n).
    Chunks are drawn and added in parallel threads; peak scratch is one chunk per thread.
    """
    n = flat.numel()
    if n == 0 or scale == 0.0:
        return
    total = start + n if numel is None else numel
    if start + n > total:
        raise ValueError(f"slice [{start}, {start + n}) exceeds tensor {name!r} of {total} elements")

    @torch.no_grad()  # grad mode is thread-local: pool threads do not inherit the caller's no_grad
    def work(rng: tuple[int, int, int]) -> None:
        c, lo, hi = rng
        z = _draw(min(CHUNK, total - c * CHUNK), derive_seed(seed, name, c), kind, flat.device, torch.float32)
        z = z[lo - c * CHUNK : hi - c * CHUNK]
        if mask is not None:
            z.mul_(mask[lo - start : hi - start])
        dst = flat[lo - start : hi - start]
        if dst.dtype == torch.float32:
            dst.add_(z, alpha=scale)  # theta <- theta + scale * z
        else:
            dst.copy_(dst.float().add_(z, alpha=scale))

    ranges = list(chunk_ranges(start, start + n))
    if flat.device.type == "cpu" and len(ranges) > 1:
        list(_pool().map(work, ranges))
    else:
        for r in ranges:
            work(r)
