"""Fused counter-based noise for CUDA tensors: z[i] = Philox(key(seed, name), canonical flat index i), in registers.

One kernel pass reads and writes every element once for any number of (seed, coeff) pairs (plus the bf16
mirror of a float32 master, plus seeded stochastic rounding), where the chunked torch path of noise.py
launches a generator, a randn and an add per 1M-element chunk and per pair. Counter-based: any slice
(a shard, one block of a fused qkv matrix, a column shard) given its canonical offsets regenerates
exactly its elements. The stream differs from noise.py's (STREAM names it); CPU never uses this file
except under TRITON_INTERPRET=1 in tests.
"""

from __future__ import annotations

import os
import struct
from typing import Sequence

import torch

from blackbox_zo.weights.seeds import KINDS, derive_seed

STREAM = "triton-philox4-v2"  # recorded as the generator id of CUDA tensors (v1: one Philox call per element)
ROUNDINGS = ("nearest", "stochastic")
ROUNDS = 10  # Philox-4x32 rounds per counter (Random123's default): part of the stream
# Box-Muller on the approximate units (lg2/sin/cos.approx) was ~15 % faster at 7B on an H200, but PTX does not promise
# the same approximate results on every GPU architecture: replicas and replays on another GPU model would drift.
FAST_MATH = False
_LOW = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}  # storage codes the kernel branches on
_KERNELS: dict = {}

try:  # selection by device needs triton; its absence only disables the CUDA fast path
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - exercised where triton is missing
    triton = tl = None


def available() -> bool:
    """True when triton imports: CUDA tensors then use this kernel (CPU keeps noise.py's generator)."""
    return triton is not None


def use_kernel(t: torch.Tensor) -> bool:
    """The device rule: CUDA tensors with triton get the fused kernel; everything else the chunked path."""
    return t.is_cuda and available()


def kernel_key(seed: int, name: str, *extra: object) -> int:
    """The Philox key of tensor `name` under step seed `seed`: derive_seed's 63 bits.

    tl.randn casts its seed to uint64 and splits it into Philox-4x32's two 32-bit key words, so any
    non-negative int64 is accepted whole; derive_seed's values lie in [0, 2^63) and need no reduction.
    """
    return derive_seed(seed, name, *extra)


def _body(dst, dst_ld, mirror, mirror_ld, mask, keys, key_ld, coeffs, n_pairs, cols, start, canon_ld, round_key, row_blocks,
          GROUPS: tl.constexpr, KIND: tl.constexpr, HAS_MIRROR: tl.constexpr, HAS_MASK: tl.constexpr,
          LOW: tl.constexpr, ROUND: tl.constexpr, MIRROR_LOW: tl.constexpr, ROUNDS: tl.constexpr, FAST: tl.constexpr):
    """dst[r, c] += sum_k coeffs[k] * z(keys[k], start + r * canon_ld + c), one read and one write per element.

    One Philox-4x32-10 call gives four 32-bit words, so canonical elements 4g..4g+3 share counter g (all four
    outputs used: a quarter of the integer work of one call per element). A program covers GROUPS counters of one row;
    join + reshape put a counter's four words in one thread, beside the four elements it loads (no layout shuffle).
    Row r reads its keys at keys + r * key_ld (key_ld = 0: every row the same tensor; 1: a key per row, see draw_rows).
    """
    p = tl.program_id(0).to(tl.int64)
    r = p // row_blocks  # the row this program writes
    first = start + r * canon_ld  # canonical index of the row's first element
    g0 = first // 4 + (p - r * row_blocks) * GROUPS  # first Philox counter of this program
    g = g0 + tl.arange(0, GROUPS)
    c = g0 * 4 + tl.arange(0, 4 * GROUPS) - first  # column within the row of canonical element 4 g + lane
    live = (c >= 0) & (c < cols)
    at = r * dst_ld + c
    x = tl.load(dst + at, mask=live, other=0.0).to(tl.float32)
    if HAS_MASK:
        keep = tl.load(mask + r * cols + c, mask=live, other=0) != 0
    for k in range(n_pairs):
        key = tl.load(keys + r * key_ld + k)
        coeff = tl.load(coeffs + k)
        i0, i1, i2, i3 = tl.randint4x(key, g, ROUNDS)  # Philox-4x32 of (key, counter g): four 32-bit words
        if KIND == 0:  # Box-Muller on the pairs (w0, w1), (w2, w3): N(0, 1) = sqrt(-2 ln a) (cos, sin)(2 pi b)
            a = tl.maximum(1.0e-7, tl.join(tl.uint_to_uniform_float(i0), tl.uint_to_uniform_float(i2)))  # [G, 2]: pair i's a
            th = 6.283185307179586 * tl.join(tl.uint_to_uniform_float(i1), tl.uint_to_uniform_float(i3))
            if FAST:  # the GPU's approximate units (abs error ~1e-6): Box-Muller without libdevice's long paths
                ln_a = 0.6931471805599453 * tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [a], tl.float32, True, 1)
                cos = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=r,r", [th], tl.float32, True, 1)
                sin = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=r,r", [th], tl.float32, True, 1)
            else:
                ln_a, cos, sin = tl.log(a), tl.cos(th), tl.sin(th)
            rad = tl.sqrt(-2.0 * ln_a)
            z = tl.reshape(tl.join(rad * cos, rad * sin), (4 * GROUPS,))  # [g, i, j] -> element 4 g + 2 i + j
        else:
            z = tl.reshape(tl.join(tl.join(i0, i2), tl.join(i1, i3)), (4 * GROUPS,))
            z = (z & 1).to(tl.float32) * 2.0 - 1.0  # z = +-1 with probability 1/2
        if HAS_MASK:
            z = tl.where(keep, z, 0.0)
        x = x + coeff * z  # theta <- theta + c_k z_k, pair by pair in float32 registers
    if ROUND == 1:  # 32 seeded bits per element, from the same counter layout under round_key
        u0, u1, u2, u3 = tl.randint4x(round_key, g, ROUNDS)
        u = tl.reshape(tl.join(tl.join(u0, u2), tl.join(u1, u3)), (4 * GROUPS,)).to(tl.uint32, bitcast=True)
    if ROUND == 1 and LOW == 1:  # bf16 = the top 16 bits of fp32: add 16 random bits, truncate
        bits = x.to(tl.uint32, bitcast=True)
        x = ((bits + (u & 0xFFFF)) & 0xFFFF0000).to(tl.float32, bitcast=True)  # P(carry) = low16 / 2^16 = (x - lo) / (hi - lo)
    if ROUND == 1 and LOW == 2:  # fp16: 13 bits below its mantissa for normals, a fixed 2^-24 grid below 2^-14
        bits = x.to(tl.uint32, bitcast=True)
        normal = ((bits + (u & 0x1FFF)) & 0xFFFFE000).to(tl.float32, bitcast=True)
        t = x * 16777216.0  # x / 2^-24, exact
        fl = tl.floor(t)
        up = ((u >> 8) & 0xFFFFFF).to(tl.float32) * 5.960464477539063e-08 < t - fl  # P(up) = frac(t)
        tiny = (fl + up.to(tl.float32)) * 5.960464477539063e-08
        x = tl.where(tl.abs(x) < 6.103515625e-05, tiny, normal)
    if HAS_MIRROR:  # the model's copy = round-to-nearest-even(master); bf16 in bits (the interpreter truncates)
        at_mirror = r * mirror_ld + c
        if MIRROR_LOW == 1:
            bits = x.to(tl.uint32, bitcast=True)
            near = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).to(tl.float32, bitcast=True)
            tl.store(mirror + at_mirror, near.to(tl.bfloat16), mask=live)
        else:
            tl.store(mirror + at_mirror, x.to(mirror.dtype.element_ty), mask=live)
    if ROUND == 0 and LOW == 1:  # round half to even into the top 16 bits; the cast below is then exact
        bits = x.to(tl.uint32, bitcast=True)
        x = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).to(tl.float32, bitcast=True)
    tl.store(dst + at, x.to(dst.dtype.element_ty), mask=live)


def jitted(body, do_not_specialize: Sequence[str]):
    """body as a triton kernel, jitted on first use per TRITON_INTERPRET mode (set by a test before the call is honoured)."""
    key = (body, os.environ.get("TRITON_INTERPRET", "0"))
    if key not in _KERNELS:
        if not available():
            raise RuntimeError("the fused CUDA kernels need triton; `pip install triton` (CUDA) or use the CPU path")
        _KERNELS[key] = triton.jit(body, do_not_specialize=list(do_not_specialize))
    return _KERNELS[key]


def _kernel():
    return jitted(_body, ["key_ld", "n_pairs", "cols", "start", "canon_ld", "round_key", "row_blocks"])


def _groups(t: torch.Tensor) -> int:
    """Philox counters per program (4 elements each): interpreter: numpy likes big blocks; GPU: 4 warps x 8 elements."""
    return 1 << 12 if not t.is_cuda else 256


def _variant(t: torch.Tensor) -> dict:
    """The stream's compile-time settings for tensor t (the interpreter has no approximate units: exact math there)."""
    return {"ROUNDS": ROUNDS, "FAST": FAST_MATH and t.is_cuda and os.environ.get("TRITON_INTERPRET", "0") == "0"}


def _coeff32(c: float) -> float:
    return struct.unpack("f", struct.pack("f", c))[0]  # the float32 value torch's add_(alpha=c) uses


class KernelJob:
    """One tensor's fused pass (the kernel counterpart of noise.py's chunk jobs); run_kernel_jobs batches tables."""

    def __init__(self, dst, name, pairs, numel, start, kind, mask, mirror, canon_ld, rounding, round_key):
        self.dst, self.name, self.mask, self.mirror, self.numel = dst, name, mask, mirror, numel
        self.keys = [kernel_key(s, name) for s, _ in pairs]
        self.coeffs = [_coeff32(c) for _, c in pairs]
        self.rows, self.cols = (dst.shape[0], dst.shape[1]) if dst.ndim == 2 else (1, dst.numel())
        self.start, self.kind, self.canon_ld = start, kind, canon_ld if canon_ld is not None else self.cols
        self.round = ROUNDINGS.index(rounding)
        self.round_key = round_key if round_key is not None else kernel_key(tuple(pairs), name, "round")

    def launch(self, keys: torch.Tensor, coeffs: torch.Tensor) -> None:
        """Run on device tables holding this job's keys and coefficients (views, possibly of one shared table)."""
        d, m = self.dst, self.mirror
        lds = (d.stride(0), m.stride(0) if m is not None else self.cols, self.canon_ld) if d.ndim == 2 else ()
        if self.rows > 1 and any(ld != self.cols for ld in lds):  # rows apart in memory or canonically: row by row
            rows, cols, dst_ld, canon_ld = self.rows, self.cols, d.stride(0), self.canon_ld
            mirror_ld = m.stride(0) if m is not None else 0
        else:  # contiguous: one row of every element
            rows, cols, dst_ld, mirror_ld, canon_ld = 1, self.rows * self.cols, 0, 0, 0
        groups = _groups(d)
        row_blocks = triton.cdiv((cols + 6) // 4, groups)  # a row spans at most (cols + 6) // 4 counters (any offset mod 4)
        mask = self.mask.view(torch.uint8) if self.mask is not None and self.mask.dtype == torch.bool else self.mask
        _kernel()[(rows * row_blocks,)](
            d, dst_ld, m if m is not None else d, mirror_ld, mask if mask is not None else d, keys, 0, coeffs,
            len(self.keys), cols, self.start, canon_ld, self.round_key, row_blocks, GROUPS=groups,
            KIND=KINDS.index(self.kind), HAS_MIRROR=m is not None, HAS_MASK=mask is not None, LOW=_LOW[d.dtype],
            ROUND=self.round, MIRROR_LOW=_LOW.get(m.dtype, 0) if m is not None else 0, **_variant(d),
        )

    def __call__(self) -> None:
        run_kernel_jobs([self])


def kernel_jobs(
    flat: torch.Tensor,
    name: str,
    pairs: Sequence[tuple[int, float]],
    numel: int | None = None,
    start: int = 0,
    kind: str = "gaussian",
    mask: torch.Tensor | None = None,
    mirror: torch.Tensor | None = None,
    canon_ld: int | None = None,
    rounding: str = "nearest",
    round_key: int | None = None,
) -> list[KernelJob]:
    """noise_jobs' meaning for CUDA tensors: one job, flat += sum_i c_i z(seed_i) over canonical [start, start + n).

    `flat` is 1-D contiguous, or a 2-D view with unit column stride whose row r holds canonical elements
    start + r * canon_ld + [0, cols) (a column shard: canon_ld = full row length). `rounding="stochastic"`
    writes bf16/fp16 `flat` with seeded stochastic rounding (bits from Philox under `round_key`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {KINDS}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; expected one of {ROUNDINGS}")
    if flat.dtype not in _LOW:
        raise ValueError(f"tensor {name!r} has dtype {flat.dtype}; the kernel writes float32, bfloat16 or float16")
    if flat.ndim not in (1, 2) or flat.stride(-1) != 1 or (flat.ndim == 1 and not flat.is_contiguous()):
        raise ValueError(f"tensor {name!r}: the kernel needs a contiguous 1-D view or a 2-D view with unit column stride")
    pairs = [(int(s), float(c)) for s, c in pairs if c != 0.0]
    n = flat.numel()
    if n == 0 or not pairs:
        return []
    rows = flat.shape[0] if flat.ndim == 2 else 1
    span = (rows - 1) * (canon_ld or (flat.shape[-1])) + flat.shape[-1]
    total = start + span if numel is None else numel
    if start + span > total:
        raise ValueError(f"slice [{start}, {start + span}) exceeds tensor {name!r} of {total} elements")
    if mirror is not None and tuple(mirror.shape) != tuple(flat.shape):
        raise ValueError(f"mirror of {name!r} has shape {tuple(mirror.shape)}, expected {tuple(flat.shape)}")
    return [KernelJob(flat, name, pairs, total, start, kind, mask, mirror, canon_ld, rounding, round_key)]


def run_kernel_jobs(jobs: Sequence[KernelJob]) -> None:
    """Launch every job after one host-to-device copy of all their keys and coefficients (not one per tensor)."""
    if not jobs:
        return
    keys = [k for j in jobs for k in j.keys]
    table = torch.tensor(keys + [0] * len(keys), dtype=torch.int64)
    table.view(torch.float64)[len(keys):] = torch.tensor([c for j in jobs for c in j.coeffs], dtype=torch.float64)
    table = table.to(jobs[0].dst.device, non_blocking=True)
    key_tab, coeff_tab = table[: len(keys)], table[len(keys):].view(torch.float64).float()
    at = 0
    with torch.no_grad():
        for j in jobs:
            j.launch(key_tab[at : at + len(j.keys)], coeff_tab[at : at + len(j.keys)])
            at += len(j.keys)


def add_noise_kernel_(flat: torch.Tensor, seed: int, name: str, scale: float, numel: int | None = None, start: int = 0,
                      kind: str = "gaussian", mask: torch.Tensor | None = None) -> None:
    """add_noise_'s meaning for CUDA tensors: flat += scale * z[start : start + flat.numel()] (times mask)."""
    run_kernel_jobs(kernel_jobs(flat, name, [(seed, scale)], numel, start, kind, mask))


def kernel_slice(seed: int, name: str, numel: int, start: int, stop: int, kind: str = "gaussian",
                 device: torch.device | str = "cuda", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Elements [start, stop) of the kernel's direction of tensor `name` (noise_slice's meaning): 0 + 1 * z, exact."""
    z = torch.zeros(stop - start, dtype=torch.float32, device=device)
    run_kernel_jobs(kernel_jobs(z, name, [(seed, 1.0)], numel, start, kind))
    return z.to(dtype)


def draw_rows(keys: Sequence[int], n: int, device: torch.device | str) -> torch.Tensor:
    """[len(keys), n] float32: row s holds elements [0, n) of the Gaussian stream under keys[s], in one launch.

    Row s equals kernel_slice of a tensor whose key is keys[s]: low-rank factors of every seed of a step at once.
    """
    out = torch.zeros(len(keys), n, dtype=torch.float32, device=device)
    if not keys or n == 0:
        return out
    table = torch.tensor(list(keys), dtype=torch.int64).to(device, non_blocking=True)
    one = torch.ones(1, dtype=torch.float32, device=device)
    groups = _groups(out)
    row_blocks = triton.cdiv((n + 6) // 4, groups)
    with torch.no_grad():
        _kernel()[(len(keys) * row_blocks,)](
            out, n, out, 0, out, table, 1, one, 1, n, 0, 0, 0, row_blocks, GROUPS=groups, KIND=0,
            HAS_MIRROR=False, HAS_MASK=False, LOW=0, ROUND=0, MIRROR_LOW=0, **_variant(out),
        )
    return out


def add_rounded_kernel_(param: torch.Tensor, pairs: Sequence[tuple[int, float]], name: str, round_key: int,
                        kind: str = "gaussian") -> None:
    """param <- SR(param + sum_i c_i z_i) in one pass: bf16/fp16 without masters, unbiased, bits from round_key."""
    run_kernel_jobs(kernel_jobs(param.detach().view(-1), name, pairs, kind=kind, rounding="stochastic", round_key=round_key))
