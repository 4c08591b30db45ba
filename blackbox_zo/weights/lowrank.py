"""Low-rank directions: z_W = U V^T / sqrt(r) for each matrix W, with U, V drawn from (seed, name); vectors stay dense.

Drawing (m + n) r numbers instead of m n makes a noise pass about as cheap as one add over the weights
(EGGROLL, arXiv 2511.16652), and a direction then lives in each matrix's low-rank subspace. Each entry
of z still has mean 0 and variance 1. Rank-one terms are added with `addr_`, which is elementwise, so
the result does not depend on thread counts or BLAS (replays and remote replicas stay bitwise equal).
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Callable, Sequence

import torch

from blackbox_zo.weights.lowrank_kernel import lowrank_rounded_kernel_
from blackbox_zo.weights.noise import CHUNK, derive_seed
from blackbox_zo.weights.noise_kernel import available, draw_rows
from blackbox_zo.weights.rounding import add_rounded_

PATTERN = re.compile(r"lowrank(\d*)$")


def rank_of(kind: str) -> int | None:
    """'lowrank' -> 1, 'lowrank4' -> 4; None for an elementwise kind (gaussian, rademacher)."""
    m = PATTERN.match(kind)
    if not m:
        return None
    rank = int(m.group(1) or 1)
    if rank < 1:
        raise ValueError(f"noise {kind!r}: the rank must be >= 1")
    return rank


def as_matrix(t: torch.Tensor) -> torch.Tensor | None:
    """The 2-D view a low-rank direction is drawn for (conv kernels flatten to out x rest); None for vectors."""
    return t.view(t.shape[0], -1) if t.ndim >= 2 else None


def factors(seed: int, name: str, rows: int, cols: int, rank: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """U (rows x rank), V (cols x rank), N(0, 1) entries, from their own streams keyed by (seed, name, side)."""
    _, u, v = draw_factors([(name, rows, cols, [seed])], rank, device)[name]
    return u[0], v[0]


def draw_factors(requests: Sequence[tuple[str, int, int, Sequence[int]]], rank: int,
                 device: torch.device) -> dict[str, tuple[list[int], torch.Tensor, torch.Tensor]]:
    """{name: (seeds, U [S, rows, rank], V [S, cols, rank])} for requests (name, rows, cols, seeds).

    U_s of `name` is the Gaussian stream under key derive_seed(s, name, 'lowrank', 'U'), elements 0 .. rows r - 1
    row-major (V likewise). CUDA: noise_kernel's Philox stream, one launch per distinct length over every
    tensor and seed (a model has a handful of shapes). CPU: a torch generator per key (bitwise what it always was).
    """
    wants = [(name, side, n * rank, seed) for name, rows, cols, seeds in requests
             for side, n in (("U", rows), ("V", cols)) for seed in seeds]
    keys = [derive_seed(seed, name, "lowrank", side) for name, side, _, seed in wants]
    if device.type != "cuda" or not available():
        return _draw_per_key(requests, keys, rank, device)
    got: list[torch.Tensor | None] = [None] * len(wants)
    by_length: dict[int, list[int]] = {}
    for i, (_, _, length, _) in enumerate(wants):
        by_length.setdefault(length, []).append(i)
    for length, idx in by_length.items():
        block = draw_rows([keys[i] for i in idx], length, device)
        for j, i in enumerate(idx):
            got[i] = block[j]
    out, at = {}, 0
    for name, rows, cols, seeds in requests:
        s = len(seeds)
        u = torch.stack(got[at:at + s]).view(s, rows, rank) if s else torch.zeros(0, rows, rank, device=device)
        v = torch.stack(got[at + s:at + 2 * s]).view(s, cols, rank) if s else torch.zeros(0, cols, rank, device=device)
        out[name] = (list(seeds), u, v)
        at += 2 * s
    return out


def _draw_per_key(requests, keys, rank, device) -> dict:
    """A torch generator per key, each draw written straight into its slot of U [S, rows, r] / V (no stacking)."""
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
    out, slots = {}, []
    for name, rows, cols, seeds in requests:
        u, v = (torch.empty(len(seeds), n, rank, device=gen.device) for n in (rows, cols))
        out[name] = (list(seeds), u, v)
        slots += list(u) + list(v)  # the order of `keys`: U of each seed, then V of each seed
    for key, slot in zip(keys, slots):
        gen.manual_seed(key)  # the same bits as torch.randn(n, r, generator=a fresh generator seeded with key)
        slot.normal_(generator=gen)
    return {name: (seeds, u.to(device), v.to(device)) for name, (seeds, u, v) in out.items()}


def add_lowrank_(matrix: torch.Tensor, name: str, pairs: Sequence[tuple[int, float]], rank: int,
                 drawn: dict | None = None) -> None:
    """In place: W += sum_i c_i U_i V_i^T / sqrt(r), one rank-one term at a time (`drawn`: draw_factors' output)."""
    rows, cols = matrix.shape
    seeds, us, vs = _factors_of(name, [s for s, _ in pairs], rows, cols, rank, matrix.device, drawn)
    for seed, scale in pairs:
        u, v = us[seeds.index(seed)], vs[seeds.index(seed)]
        for k in range(rank):
            matrix.addr_(u[:, k], v[:, k], alpha=scale / math.sqrt(rank))  # W_ij += c u_ik v_jk / sqrt(r)


def _factors_of(name, seeds, rows, cols, rank, device, drawn):
    """(seeds, U, V) covering `seeds`: from `drawn` when it has them all, else drawn now (the same bits)."""
    known = (drawn or {}).get(name)
    if known is not None and set(seeds) <= set(known[0]):
        return known
    return draw_factors([(name, rows, cols, list(dict.fromkeys(seeds)))], rank, device)[name]


def lowrank_job(flat: torch.Tensor, shape: torch.Size, name: str, pairs: Sequence[tuple[int, float]], rank: int,
                mirror: torch.Tensor | None = None, drawn: dict | None = None) -> list[Callable[[], None]]:
    """One job for one tensor (fp32 `flat` of `shape`; `mirror`, a low-precision copy, gets its rounding)."""
    pairs = [(s, c) for s, c in pairs if c != 0.0]
    if not pairs:
        return []

    def job() -> None:
        add_lowrank_(flat.view(shape[0], -1), name, pairs, rank, drawn)
        if mirror is not None:
            mirror.copy_(flat)

    return [partial(job)]


def update_tables(drawn: dict, pairs: Sequence[tuple[int, float]], rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (U_all [rows, n r], V_all [cols, n r])} with U_all V_all^T = sum_i c_i U_i V_i^T / sqrt(r) for every matrix
    of one population's `drawn` (same seeds, one device), from one gather per side for all; {} for mixed draws."""
    if not drawn:
        return {}
    known, first, _ = next(iter(drawn.values()))
    seeds = [seed for seed, _ in pairs]
    if not set(seeds) <= set(known) or any(k != known or u.device != first.device for k, u, _ in drawn.values()):
        return {}
    at = {seed: j for j, seed in enumerate(known)}
    index = torch.tensor([at[seed] for seed in seeds]).to(first.device, non_blocking=True)
    coeff = torch.tensor([c / math.sqrt(rank) for _, c in pairs], dtype=torch.float32).to(first.device, non_blocking=True)
    u = torch.cat([u for _, u, _ in drawn.values()], dim=1)[index] * coeff[:, None, None]  # [n, sum rows, r]: c_i U_i / sqrt(r)
    v = torch.cat([v for _, _, v in drawn.values()], dim=1)[index]  # [n, sum cols, r]
    u, v = u.transpose(0, 1).reshape(u.shape[1], -1), v.transpose(0, 1).reshape(v.shape[1], -1)  # [sum rows, n r]
    rows, cols = [x.shape[1] for _, x, _ in drawn.values()], [x.shape[1] for _, _, x in drawn.values()]
    return dict(zip(drawn, zip(u.split(rows), v.split(cols))))


def lowrank_update_(param: torch.Tensor, name: str, pairs: Sequence[tuple[int, float]], rank: int, round_seed: int,
                    drawn: dict | None = None, tables: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """W += sum_i c_i U_i V_i^T / sqrt(r) in one pass over W: a single rank-(n r) product, not n passes.

    float32: one addmm_ (K = n r is far below a GEMM's k-block, so no thread splits the sum and replays match).
    bf16/fp16: on CUDA one fused pass (lowrank_kernel: the tile's product in registers, then seeded rounding); on
    CPU, row blocks of about CHUNK elements get the product in float32 and are rounded stochastically.
    `drawn`: factors a population drew this step, {name: (seeds, U [S, rows, r], V [S, cols, r])} (the same bits);
    `tables`: this matrix's (U_all, V_all) from `update_tables`.
    """
    matrix = as_matrix(param.detach())
    rows, cols = matrix.shape
    if tables is None:
        tables = update_tables({name: _factors_of(name, [s for s, _ in pairs], rows, cols, rank, param.device, drawn)},
                               pairs, rank)[name]
    u_all, v_all = tables
    if param.dtype == torch.float32:
        matrix.addmm_(u_all, v_all.T)  # W += U_all V_all^T = sum_i c_i U_i V_i^T / sqrt(r)
        return
    if matrix.is_cuda and available():  # one pass: W <- SR(W + U_all V_all^T), bits from round_seed and the name
        lowrank_rounded_kernel_(matrix, u_all, v_all, derive_seed(round_seed, name, "round"))
        return
    block = max(1, CHUNK // cols)
    for start in range(0, rows, block):
        part = matrix[start:start + block]
        add_rounded_(part, u_all[start:start + block] @ v_all.T, round_seed, f"{name}@{start}")
