"""Step overhead: wall time of one ZO step / time of the 2 objective evaluations inside it (target <= 1.15).

Measured side by side in one process, on the embedded SmolLM2-135M (float32, 134.5 M weights), objective =
forward loss of a 16 x 64-token batch:

  ours       blackbox_zo.MeZO(model, lr, eps, seed, rule="raw").step(closure): three chunked, seeded,
             multi-threaded in-place noise passes (+eps, -2eps, then restore + update fused into one pass)
  lowrank    the same with noise="lowrank": z_W = u v^T per matrix, so a pass draws (m + n) numbers per
             matrix instead of m n and costs about one add over the weights
  reference  the MeZO paper's Algorithm 1 exactly as written (Malladi et al. 2023): torch.manual_seed(s),
             then for each parameter z = torch.normal(0, 1, size) and param.data = param.data + scale * z
             (out of place), four passes (+eps, -2eps, +eps, then -lr * projected_grad)

The ratio of a step is its wall time divided by the wall time of the two closure calls made inside that
same step (so background load that slows both cancels out); the median over repeats is reported, after
one untimed warm-up step of each. Ours and the reference alternate so both see the same machine state.
Also timed: one noise pass (draw z for every weight and add it) of each, the floor (one in-place add of a
constant over 134.5 M float32 numbers: memory bandwidth only; each pass is reported as a multiple of it),
and a standalone forward loss.

    python benchmarks/step_overhead.py            # ~4 min on a quiet 2-core CPU
    python benchmarks/step_overhead.py --batch 4 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


# --- the reference: MeZO Algorithm 1, as written in the paper ---------------------------------------
def perturb_parameters(params, eps: float, seed: int) -> None:
    """Subroutine PerturbParameters(theta, eps, s): reset the RNG with s; for each theta_i: z ~ N(0,1); theta_i += eps z."""
    import torch

    torch.manual_seed(seed)
    for param in params:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data + eps * z  # out of place, as in the reference implementation


def reference_step(params, loss_fn, eps: float, lr: float, seed: int, timings: list) -> float:
    """One step of Algorithm 1; appends the wall time of each of its two loss evaluations to `timings`."""
    import torch

    perturb_parameters(params, eps, seed)
    t0 = time.perf_counter()
    loss_plus = loss_fn()
    timings.append(time.perf_counter() - t0)
    perturb_parameters(params, -2 * eps, seed)
    t0 = time.perf_counter()
    loss_minus = loss_fn()
    timings.append(time.perf_counter() - t0)
    perturb_parameters(params, eps, seed)  # reset parameters before descent
    projected_grad = (loss_plus - loss_minus) / (2 * eps)
    torch.manual_seed(seed)  # reset the random number generator with s, for sampling z
    for param in params:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data - lr * projected_grad * z
    return (loss_plus + loss_minus) / 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16, help="sequences per batch (default 16)")
    p.add_argument("--seq", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps of each method after one warm-up (default 3)")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--out", default=None, help="JSON results path (default benchmarks/results/step_overhead.json)")
    args = p.parse_args(argv)

    import torch

    import blackbox_zo
    from blackbox_zo.lm import load_model
    from blackbox_zo.weights.params import ParamSpace

    info = common.machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
          f"load avg {info['loadavg_1_5_15']}")
    model, _ = load_model()
    params = [p for p in model.parameters() if p.requires_grad]  # tied lm_head/embed counted once
    numel = sum(p.numel() for p in params)
    batch = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    print(f"model: embedded SmolLM2-135M, {numel:,} weights, float32; batch {args.batch} x {args.seq} tokens")

    def loss_fn() -> float:
        with torch.no_grad():
            return float(model(input_ids=batch, labels=batch).loss)

    # standalone objective evaluation
    evals = common.time_median(loss_fn, repeats=args.repeats, warmup=1)
    print(f"forward loss: median {evals['median_s']:.2f} s  {[f'{s:.2f}' for s in evals['samples_s']]}", flush=True)

    # one noise pass each: ours = seeded chunked draw + in-place add; reference = PerturbParameters
    space = ParamSpace(model)
    sign = [1.0]

    def ours_pass():
        space.apply([(12345, sign[0] * args.eps)])
        sign[0] = -sign[0]

    def ref_pass():
        perturb_parameters(params, sign[0] * args.eps, 12345)
        sign[0] = -sign[0]

    noise_ours = common.time_median(ours_pass, repeats=args.repeats + (args.repeats % 2 == 0), warmup=1)
    if sign[0] < 0:
        ours_pass()  # leave the weights where they were (up to rounding)
    space = ParamSpace(model, noise="lowrank")
    noise_lowrank = common.time_median(ours_pass, repeats=args.repeats + (args.repeats % 2 == 0), warmup=1)
    if sign[0] < 0:
        ours_pass()
    scratch = torch.zeros(numel)
    floor = common.time_median(lambda: scratch.add_(1.0), repeats=args.repeats, warmup=1)
    noise_ref = common.time_median(ref_pass, repeats=args.repeats + (args.repeats % 2 == 0), warmup=1)
    if sign[0] < 0:
        ref_pass()
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"noise pass: ours {noise_ours['median_s']:.2f} s, lowrank {noise_lowrank['median_s']:.2f} s, "
          f"reference {noise_ref['median_s']:.2f} s, floor (one add) {floor['median_s']:.3f} s", flush=True)

    # steps, alternating; first of each is the warm-up
    opts = {"ours": blackbox_zo.MeZO(model, lr=args.lr, eps=args.eps, seed=0, rule="raw"),
            "lowrank": blackbox_zo.MeZO(model, lr=args.lr, eps=args.eps, seed=0, rule="raw", noise="lowrank")}
    runs: dict[str, list] = {"ours": [], "lowrank": []}
    ref = []
    for i in range(args.repeats + 1):
        for name, opt in opts.items():
            inner: list[float] = []

            def closure():
                t0 = time.perf_counter()
                v = loss_fn()
                inner.append(time.perf_counter() - t0)
                return v

            wall, _ = common.timed(lambda: opt.step(closure))
            assert len(inner) == 2, inner
            rec = {"step_s": wall, "evals_s": sum(inner), "ratio": wall / sum(inner)}
            if i:
                runs[name].append(rec)
            label = "warm-up" if not i else f"step {i}"
            print(f"{label:>8} {name:9} {wall:6.2f} s, evals {sum(inner):6.2f} s, ratio {rec['ratio']:.3f}", flush=True)

        inner_ref: list[float] = []
        params = [p for p in model.parameters() if p.requires_grad]
        wall, _ = common.timed(lambda: reference_step(params, loss_fn, args.eps, args.lr, 1000 + i, inner_ref))
        rec = {"step_s": wall, "evals_s": sum(inner_ref), "ratio": wall / sum(inner_ref)}
        if i:
            ref.append(rec)
        label = "warm-up" if not i else f"step {i}"
        print(f"{label:>8} reference {wall:6.2f} s, evals {sum(inner_ref):6.2f} s, ratio {rec['ratio']:.3f}", flush=True)

    def summary(recs):
        return {"ratio_median": common.median([r["ratio"] for r in recs]),
                "step_median_s": common.median([r["step_s"] for r in recs]),
                "evals_median_s": common.median([r["evals_s"] for r in recs]),
                "ratio_vs_standalone_evals": common.median([r["step_s"] for r in recs]) / (2 * evals["median_s"]),
                "steps": recs}

    res_ours, res_low, res_ref = summary(runs["ours"]), summary(runs["lowrank"]), summary(ref)
    info_end = common.machine_info()["loadavg_1_5_15"]
    results = (res_ours, res_low, res_ref)
    passes = (noise_ours, noise_lowrank, noise_ref)
    table = [("step / its 2 evals (target 1.10)", [r["ratio_median"] for r in results]),
             ("step / 2 standalone evals (target 1.15)", [r["ratio_vs_standalone_evals"] for r in results]),
             ("step wall (s)", [r["step_median_s"] for r in results]),
             ("noise pass (s)", [n["median_s"] for n in passes]),
             ("noise pass / floor", [n["median_s"] / floor["median_s"] for n in passes])]
    print(f"\n{'':42}{'ours':>9}{'lowrank':>9}{'reference':>11}")
    for label, values in table:
        print(f"{label:42}" + "".join(f"{v:9.3f}" for v in values[:2]) + f"{values[2]:11.3f}")
    print(f"floor: one add over all weights, {floor['median_s']:.3f} s")
    print(f"forward loss (s)         {evals['median_s']:6.2f}   (standalone median)")
    print(f"load average at end: {info_end}")
    payload = {"benchmark": "step_overhead", "machine": info, "loadavg_end": info_end, "git": common.git_commit(),
               "settings": {"model": "embedded SmolLM2-135M", "numel": numel, "dtype": "float32", "batch": args.batch,
                            "seq": args.seq, "repeats": args.repeats, "warmup": 1, "lr": args.lr, "eps": args.eps},
               "forward_loss": evals, "floor_add": floor,
               "noise_pass": {"ours": noise_ours, "lowrank": noise_lowrank, "reference": noise_ref},
               "ours": res_ours, "lowrank": res_low, "reference": res_ref,
               "targets": {"in_step": 1.10, "standalone": 1.15}}
    path = common.write_results("step_overhead", payload, args.out)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
