"""The CUDA kernels compiled on a real GPU (the tests run them under triton's interpreter): same contracts, checked there.

Slices regenerate their part of the whole, draw_rows equals per-key slices, z has mean 0 / variance 1, fused pairs
equal sequential application (float32), and the low-rank rounded update lands on a neighbour with slope 1.
Prints one line per check and exits 1 if any fails; needs CUDA (exits 2 without).

    python benchmarks/gpu_kernel_check.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def checks(dev: str = "cuda") -> dict[str, bool]:
    from blackbox_zo.weights import noise_kernel as nk
    from blackbox_zo.weights.lowrank_kernel import lowrank_rounded_kernel_

    out = {}
    rows, cols = 96, 130
    whole = nk.kernel_slice(4, "qkv", rows * cols, 0, rows * cols, device=dev).view(rows, cols)
    buf = torch.zeros(rows + 16, 200, device=dev)
    nk.run_kernel_jobs(nk.kernel_jobs(buf[16:, 10:80], "qkv", [(4, 1.0)], numel=rows * cols, start=30, canon_ld=cols))
    out["column shard = slice of the whole"] = torch.equal(buf[16:, 10:80], whole[:, 30:100])
    out["offsets mod 4"] = all(torch.equal(nk.kernel_slice(4, "qkv", rows * cols, s, s + 77, device=dev),
                                           whole.view(-1)[s:s + 77]) for s in range(8))
    keys = [nk.kernel_key(5, "w"), nk.kernel_key(6, "w")]
    drawn = nk.draw_rows(keys, 5001, dev)
    out["draw_rows = per-key slices"] = all(torch.equal(drawn[i], nk.kernel_slice(s, "w", 5001, 0, 5001, device=dev))
                                            for i, s in enumerate((5, 6)))
    z = nk.kernel_slice(11, "w", 1 << 22, 0, 1 << 22, device=dev).double()
    band = 4 / math.sqrt(z.numel())
    out["mean 0, variance 1, lag-1..4 uncorrelated"] = bool(
        abs(z.mean()) < band and abs(z.var() - 1) < 4 * math.sqrt(2 / z.numel())
        and all(abs(torch.corrcoef(torch.stack([z[k:], z[:-k]]))[0, 1]) < band for k in (1, 2, 3, 4)))
    x = torch.randn(1 << 20, device=dev)
    fused, seq = x.clone(), x.clone()
    pairs = [(1, 0.5), (2, -0.25), (3, 1e-3)]
    nk.run_kernel_jobs(nk.kernel_jobs(fused, "t", pairs))
    for p in pairs:
        nk.run_kernel_jobs(nk.kernel_jobs(seq, "t", [p]))
    out["fused pairs = sequential (fp32)"] = bool((fused - seq).abs().max() < 1e-6)
    w = (torch.randn(1000, 700, device=dev) * 0.02).to(torch.bfloat16)
    u, v = torch.randn(1000, 8, device=dev) * 1e-5, torch.randn(700, 8, device=dev)
    exact = w.double() + u.double() @ v.double().T
    a, b = w.clone(), w.clone()
    lowrank_rounded_kernel_(a, u, v, 7)
    lowrank_rounded_kernel_(b, u, v, 7)
    gap = (a.double() - exact).abs()
    ulp = (torch.nextafter(a, torch.full_like(a, float("inf"))).double() - a.double()).abs()
    moved, intended = (a.double() - w.double()).flatten(), (exact - w.double()).flatten()
    slope = float((moved * intended).sum() / (intended * intended).sum())
    out[f"low-rank SR: neighbour, seeded, slope {slope:.3f}"] = bool(torch.equal(a, b) and (gap <= 2 * ulp).all()
                                                                      and 0.9 < slope < 1.1)
    return out


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_kernel_check.py needs a CUDA GPU; nothing checked.")
        return 2
    results = checks()
    for name, ok in results.items():
        print(("PASS " if ok else "FAIL ") + name, flush=True)
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
