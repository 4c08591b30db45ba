"""The noise kernel alone on one large tensor: passes vs the memory floor per Philox round count and Box-Muller math.

For float32 and bfloat16 storage, one (seed, coeff) pair, Gaussian and +-1 kinds, and the stream's compile-time
settings (noise_kernel.ROUNDS, noise_kernel.FAST_MATH) switched here for the measurement only, it times
run_kernel_jobs over a 2^28-element tensor against torch's in-place multiply (one read and one write: the floor),
and the cost of one launch on a tiny tensor (what a model of many small tensors pays per tensor). Needs CUDA.

    python benchmarks/gpu_noise_kernel.py
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seconds(fn, repeats: int = 7) -> float:
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return sorted(out)[len(out) // 2]


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_noise_kernel.py needs a CUDA GPU; nothing measured.")
        return 2
    from blackbox_zo.weights import noise_kernel as nk

    rows = []
    saved = nk.ROUNDS, nk.FAST_MATH
    try:
        for dtype, rounding in ((torch.float32, "nearest"), (torch.bfloat16, "nearest"), (torch.bfloat16, "stochastic")):
            t = torch.zeros(1 << 28, dtype=dtype, device="cuda")
            floor = seconds(lambda: t.mul_(1.0))
            for rounds, fast, kind in itertools.product((10, 7), (False, True), ("gaussian", "rademacher")):
                nk.ROUNDS, nk.FAST_MATH = rounds, fast
                jobs = nk.kernel_jobs(t, "w", [(1, 1e-3)], kind=kind, rounding=rounding, round_key=5)
                s = seconds(lambda: nk.run_kernel_jobs(jobs))
                rows.append({"dtype": str(dtype).split(".")[-1], "rounding": rounding, "rounds": rounds, "fast": fast,
                             "kind": kind, "seconds": s, "floor": floor, "over_floor": s / floor})
                print(f"{rows[-1]['dtype']:9s} {rounding:10s} rounds {rounds:2d} fast {fast!s:5s} {kind:10s} "
                      f"{s * 1e3:7.2f} ms  floor {floor * 1e3:6.2f} ms  x{s / floor:5.2f}", flush=True)
        tiny = torch.zeros(1024, device="cuda")
        jobs = nk.kernel_jobs(tiny, "w", [(1, 1e-3)])
        per = seconds(lambda: [nk.run_kernel_jobs(jobs) for _ in range(200)], 3) / 200
        print(f"one launch on a tiny tensor (host side included): {per * 1e6:.1f} us")
    finally:
        nk.ROUNDS, nk.FAST_MATH = saved
    payload = {"command": "python benchmarks/gpu_noise_kernel.py", "gpu": torch.cuda.get_device_name(),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows, "launch_s": per}
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results" / "gpu_noise_kernel.json"
    out.write_text(json.dumps(payload, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
