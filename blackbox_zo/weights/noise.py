"""Seeded, layout-independent random directions: z is regenerated from (seed, tensor name), never stored.

Every tensor's flat index range is cut into fixed chunks of CHUNK elements; chunk c of tensor `name`
under step seed s is drawn whole (its size depends only on the tensor's total numel) from its own
generator seeded by hash(s, name, c). So a backend that holds only a slice of a tensor (a shard, one
block of a fused qkv matrix) regenerates exactly its slice, independent of process, iteration order
and global RNG state. (torch's CPU randn(n) is not a prefix of randn(m): chunks are always drawn whole.)
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterator, Sequence

import torch

from blackbox_zo.weights.seeds import KINDS, derive_seed

CHUNK = 1 << 20  # elements per independently seeded chunk (4 MiB of float32 scratch at most)
_POOL: ThreadPoolExecutor | None = None
_SCRATCH = threading.local()


def generator_id(device: torch.device | str) -> str:
    """Names the random stream family; a trajectory records it so replays refuse a different one.

    CUDA with triton: the fused Philox kernel (noise_kernel.py), a different stream from torch's generators.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and _kernel().available():
        return _kernel().STREAM
    return f"torch-{dev.type}-chunk{CHUNK}-v1"


def _kernel():
    """noise_kernel, imported on demand (it imports derive_seed from here)."""
    from blackbox_zo.weights import noise_kernel

    return noise_kernel


def _scratch(n: int) -> torch.Tensor:
    """This thread's reusable CPU buffer of n float32 elements (one chunk per thread, allocated once)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.numel() < n:
        buf = _SCRATCH.buf = torch.empty(max(n, CHUNK), dtype=torch.float32)
    return buf[:n]


def _draw(n: int, seed: int, kind: str, device: torch.device, dtype: torch.dtype, reuse: bool = False) -> torch.Tensor:
    """n numbers of direction noise from their own generator; reuse: into this thread's scratch (valid until the next draw).

    Trap: a fresh 4 MiB tensor per chunk lets glibc raise its mmap threshold and keep ~90 MB of freed chunks
    in per-thread arenas (peak RSS of a step 1.08x inference); the scratch removes that. normal_ on a buffer
    gives the same bits as randn of the same length.
    """
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    gen = torch.Generator(device=gen_device)
    gen.manual_seed(seed)
    if kind == "gaussian" and reuse and gen_device.type == "cpu" and dtype == torch.float32 and device.type == "cpu":
        return _scratch(n).normal_(generator=gen)
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
    if device.type == "cuda" and _kernel().available():  # selection by device: CUDA regenerates with the kernel
        return _kernel().kernel_slice(seed, name, numel, start, stop, kind, device, dtype)
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


def noise_jobs(
    flat: torch.Tensor,
    name: str,
    pairs: Sequence[tuple[int, float]],
    numel: int | None = None,
    start: int = 0,
    kind: str = "gaussian",
    mask: torch.Tensor | None = None,
    mirror: torch.Tensor | None = None,
) -> list[Callable[[], None]]:
    """One job per chunk of `flat`: flat += sum_i c_i z(seed_i) over that chunk (then mirror <- flat there).

    `flat` is a contiguous 1-D view holding canonical elements [start, start + n) of tensor `name`,
    whose canonical (Hugging Face) form has `numel` elements (default: start + n). Jobs touch disjoint
    memory, so jobs of many tensors can run together (run_jobs); scratch is one chunk per running job.
    `mirror` (e.g. a bf16 parameter whose fp32 master is `flat`) receives the rounded result.
    """
    if flat.is_cuda and _kernel().use_kernel(flat):  # CUDA: one fused pass over all pairs (noise_kernel.py)
        return _kernel().kernel_jobs(flat, name, pairs, numel, start, kind, mask, mirror)
    n = flat.numel()
    pairs = [(s, c) for s, c in pairs if c != 0.0]
    if n == 0 or not pairs:
        return []
    total = start + n if numel is None else numel
    if start + n > total:
        raise ValueError(f"slice [{start}, {start + n}) exceeds tensor {name!r} of {total} elements")

    def job(c: int, lo: int, hi: int) -> None:
        dst = flat[lo - start : hi - start]
        for seed, scale in pairs:
            z = _draw(min(CHUNK, total - c * CHUNK), derive_seed(seed, name, c), kind, flat.device, torch.float32, reuse=True)
            z = z[lo - c * CHUNK : hi - c * CHUNK]
            if mask is not None:
                z.mul_(mask[lo - start : hi - start])
            if dst.dtype == torch.float32:
                dst.add_(z, alpha=scale)  # theta <- theta + scale * z
            else:
                dst.copy_(dst.float().add_(z, alpha=scale))
        if mirror is not None:
            mirror[lo - start : hi - start].copy_(dst)

    return [partial(job, c, lo, hi) for c, lo, hi in chunk_ranges(start, start + n)]


@torch.no_grad()  # grad mode is thread-local: pool threads do not inherit the caller's no_grad
def _run(job: Callable[[], None]) -> None:
    job()


def run_jobs(jobs: list[Callable[[], None]], device: torch.device | str = "cpu") -> None:
    """Run chunk jobs on all cores (CPU) or in order (CUDA: the GPU parallelises each job itself).

    Kernel jobs (CUDA) run together after one host-to-device copy of all their seeds and coefficients.
    """
    if torch.device(device).type == "cuda":  # CPU never imports triton
        kernel = [j for j in jobs if isinstance(j, _kernel().KernelJob)]
        _kernel().run_kernel_jobs(kernel)
        jobs = [j for j in jobs if not isinstance(j, _kernel().KernelJob)]
    if len(jobs) > 1 and torch.device(device).type == "cpu":
        list(_pool().map(_run, jobs))
    else:
        for job in jobs:
            _run(job)


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
    """In place: flat += scale * z[start : start + flat.numel()] (times mask, if given); see noise_jobs."""
    run_jobs(noise_jobs(flat, name, [(seed, scale)], numel, start, kind, mask), flat.device)
