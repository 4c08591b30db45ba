"""W <- SR(W + U V^T) for a bfloat16 / float16 matrix on CUDA in one pass: a tile's product in registers, then seeded rounding.

A step's low-rank update (sum_i c_i U_i V_i^T, K = n r columns) costs one read and one write of W instead of a
float32 scratch per row block, a generator per chunk and a dozen elementwise launches. The rounding bits are
Philox words keyed by (round_key, row, column // 4), so a replay rounds every element the same way, bitwise.
"""

from __future__ import annotations

import torch

from blackbox_zo.weights.noise_kernel import jitted, tl, triton

_LOW = {torch.bfloat16: 1, torch.float16: 2}


def _body(w, ld, u, v, rows, cols, width, quads, round_key,
          LOW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Tile (BM x BN) of W: d = U[rows] V[cols]^T accumulated over K in BK slices, x = W + d, rounded stochastically."""
    rm = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    rn = tl.program_id(1).to(tl.int64) * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, width, BK):
        rk = k0 + tl.arange(0, BK)
        a = tl.load(u + rm[:, None] * width + rk[None, :], mask=(rm[:, None] < rows) & (rk[None, :] < width), other=0.0)
        b = tl.load(v + rn[:, None] * width + rk[None, :], mask=(rn[:, None] < cols) & (rk[None, :] < width), other=0.0)
        acc += tl.dot(a, tl.trans(b), input_precision="ieee")  # d[r, c] = sum_j U[r, j] V[c, j], float32 throughout
    live = (rm[:, None] < rows) & (rn[None, :] < cols)
    at = rm[:, None] * ld + rn[None, :]
    x = tl.load(w + at, mask=live, other=0.0).to(tl.float32) + acc
    # four columns share one Philox counter (row, column // 4): its four words, interleaved back to columns
    g = rm[:, None] * quads + (tl.program_id(1).to(tl.int64) * (BN // 4) + tl.arange(0, BN // 4))[None, :]
    u0, u1, u2, u3 = tl.randint4x(round_key, g)
    bits4 = tl.join(tl.join(u0, u2), tl.join(u1, u3))  # [BM, BN/4, 2, 2]: [.., i, j] = word 2 i + j
    r = tl.reshape(bits4, (BM, BN)).to(tl.uint32, bitcast=True)  # column 4 q + 2 i + j gets word 2 i + j of counter q
    bits = x.to(tl.uint32, bitcast=True)
    if LOW == 1:  # bf16 = the top 16 bits of fp32: add 16 random bits, truncate; P(up) = (x - lo) / (hi - lo)
        x = ((bits + (r & 0xFFFF)) & 0xFFFF0000).to(tl.float32, bitcast=True)
    else:  # fp16: 13 random bits below its mantissa for normals, a fixed 2^-24 grid below 2^-14
        normal = ((bits + (r & 0x1FFF)) & 0xFFFFE000).to(tl.float32, bitcast=True)
        t = x * 16777216.0  # x / 2^-24, exact
        fl = tl.floor(t)
        up = ((r >> 8) & 0xFFFFFF).to(tl.float32) * 5.960464477539063e-08 < t - fl  # P(up) = frac(t)
        x = tl.where(tl.abs(x) < 6.103515625e-05, (fl + up.to(tl.float32)) * 5.960464477539063e-08, normal)
    tl.store(w + at, x.to(w.dtype.element_ty), mask=live)


def _kernel():
    return jitted(_body, ["rows", "cols", "width", "quads", "round_key"])


def lowrank_rounded_kernel_(matrix: torch.Tensor, u: torch.Tensor, v: torch.Tensor, round_key: int) -> None:
    """matrix <- SR(matrix + u v^T): matrix [rows, cols] bf16/fp16 with unit column stride, u [rows, K], v [cols, K] float32."""
    if matrix.dtype not in _LOW:
        raise ValueError(f"the low-rank rounding kernel writes bfloat16 or float16, got {matrix.dtype}")
    if matrix.ndim != 2 or matrix.stride(1) != 1:
        raise ValueError("the low-rank rounding kernel needs a 2-D matrix with unit column stride")
    rows, cols = matrix.shape
    width = u.shape[1]
    if tuple(u.shape) != (rows, width) or tuple(v.shape) != (cols, width):
        raise ValueError(f"factors {tuple(u.shape)} / {tuple(v.shape)} do not fit a {rows} x {cols} matrix")
    u, v = u.float().contiguous(), v.float().contiguous()
    bm, bn = (64, 64) if matrix.is_cuda else (128, 128)
    bk = 16 if width <= 16 else 32
    grid = (triton.cdiv(rows, bm), triton.cdiv(cols, bn))
    with torch.no_grad():
        _kernel()[grid](matrix, matrix.stride(0), u, v, rows, cols, width, triton.cdiv(cols, 4), round_key,
                        LOW=_LOW[matrix.dtype], BM=bm, BN=bn, BK=bk)
