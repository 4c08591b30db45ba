"""Member evaluations per second: a population evaluated at use time in one batched forward vs walked in place.

For each population size N, side by side in one process on the same prompts: plain inference over the same
N x b rows (no hooks: the ceiling), one ZO step with the batched path (low-rank, evaluate='batched'), and
one step walked in place (low-rank and Gaussian). A step's N evaluations score b prompts each (loglik).

    python benchmarks/population_throughput.py                 # embedded SmolLM2-135M, N = 8 32, float32
    python benchmarks/population_throughput.py --sizes 8 32 128 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import blackbox_zo as bz  # noqa: E402
from benchmarks.common import git_commit, machine_info, median, write_results  # noqa: E402
from blackbox_zo.lm import TransformersLM, load_model  # noqa: E402

PROMPTS = ["The film was a quiet triumph of acting and", "I would not watch this again because the plot",
           "A warm, funny story that", "The soundtrack alone makes it"]
TARGETS = [" great.", " was thin.", " everyone loves.", " worth it."]


def step_seconds(model, tok, n: int, noise: str, evaluate: str, rows: int) -> float:
    """Wall time of one population step (N = 2 n antithetic points) with a fresh space."""
    lm = TransformersLM(model, tok, batch_size=len(PROMPTS), population_rows=rows)
    opt = bz.MeZO(model, estimator="population", n=n // 2, noise=noise, evaluate=evaluate, maximize=True, seed=n)
    t0 = time.perf_counter()
    opt.step(lambda: sum(lm.loglik(PROMPTS, TARGETS)))
    seconds = time.perf_counter() - t0
    opt.engine.backend.apply([(s, -c) for s, c in opt.last.update])  # undo the update: every run sees the same model
    return seconds


def plain_seconds(model, tok, n: int, rows: int) -> float:
    """Scoring the same N x b rows without any perturbation (the batch repeated N times, chunked as the LM does)."""
    lm = TransformersLM(model, tok, batch_size=min(rows, n * len(PROMPTS)))
    t0 = time.perf_counter()
    lm.loglik(PROMPTS * n, TARGETS * n)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", type=int, default=256, help="most rows in one forward (TransformersLM.population_rows)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the same comparison on a GPU)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    rows = []
    with torch.no_grad():
        step_seconds(model, tok, 2, "lowrank", "batched", args.rows)  # warm-up
        for n in args.sizes:
            t = {k: [] for k in ("plain", "batched", "inplace_lowrank", "inplace_gaussian")}
            for _ in range(args.repeats):
                t["plain"].append(plain_seconds(model, tok, n, args.rows))
                t["batched"].append(step_seconds(model, tok, n, "lowrank", "batched", args.rows))
                t["inplace_lowrank"].append(step_seconds(model, tok, n, "lowrank", "inplace", args.rows))
                t["inplace_gaussian"].append(step_seconds(model, tok, n, "gaussian", "inplace", args.rows))
            rate = {k: n / median(v) for k, v in t.items()}  # member evaluations per second
            row = {"N": n, "rows_per_member": len(PROMPTS), "seconds": t, "members_per_s": rate,
                   "batched_over_plain": rate["batched"] / rate["plain"],
                   "batched_over_inplace_lowrank": rate["batched"] / rate["inplace_lowrank"],
                   "batched_over_inplace_gaussian": rate["batched"] / rate["inplace_gaussian"]}
            rows.append(row)
            print(f"N={n:4d}  members/s  plain {rate['plain']:.2f}  batched {rate['batched']:.2f}  "
                  f"in-place low-rank {rate['inplace_lowrank']:.2f}  in-place gaussian {rate['inplace_gaussian']:.2f}  "
                  f"| batched/plain {row['batched_over_plain']:.2f}  batched/in-place low-rank "
                  f"{row['batched_over_inplace_lowrank']:.2f}", flush=True)
    payload = {"command": "python " + " ".join(sys.argv), "commit": git_commit(), "machine": machine_info(),
               "date": time.strftime("%Y-%m-%d"), "model": args.model, "dtype": args.dtype, "device": args.device,
               "rows": rows}
    print(write_results("population_throughput", payload, args.out))


if __name__ == "__main__":
    main()
