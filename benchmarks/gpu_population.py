"""Issue 20 on a GPU: a population evaluated at use time in one batched forward vs plain inference vs the in-place walk.

Random-init Llama shapes (no download, no tokenizer): N members score the same b x seq token batch. "plain" runs
the N x b rows once with no perturbation; "batched" is one MeZO population step whose closure repeats the batch per
member and tags the rows (what TransformersLM does); "inplace" is the same step walked in place. Peak memory of
each is torch.cuda.max_memory_allocated. Works on CPU too (small --config tiny) for a smoke run.

    python benchmarks/gpu_population.py --config 1.7b --dtype bfloat16 --sizes 8 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import blackbox_zo as bz  # noqa: E402
from blackbox_zo.weights.population import active, member_major  # noqa: E402

CONFIGS = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                 vocab_size=1000),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=49152),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}


def scores(model, ids) -> torch.Tensor:
    """Per-row log-sum-exp of the last position's logits: a cheap scalar per row that every weight moves."""
    return model(input_ids=ids, logits_to_keep=1).logits[:, -1].float().logsumexp(-1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    sync(device)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return time.perf_counter() - t0, peak


def batched_closure(model, ids):
    """The LM's job: on a member's first call score every member's copy of the batch in one forward, then serve it."""
    cache = {}

    def closure():
        members = active()
        if members is None:
            return float(scores(model, ids).mean())
        if not cache:
            b, n = ids.shape[0], members.n
            with members.tagged(member_major(n, b, ids.device), block=(0, n)):
                cache["all"] = scores(model, ids.repeat(n, 1)).view(n, b).mean(1).tolist()
        return cache["all"][members.selected]
    return closure


def profile_batched(model, ids, n: int, device) -> None:
    """torch.profiler over one batched step: where its time goes (kernels by device time, launches by count)."""
    from torch.profiler import ProfilerActivity, profile

    opt = bz.MeZO(model, estimator="population", n=n // 2, noise="lowrank", evaluate="batched", seed=99)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        opt.step(batched_closure(model, ids))
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=48), flush=True)
    with profile(activities=activities) as plain:  # the same rows with no population: what the forward costs alone
        scores(model, ids.repeat(n, 1))
        sync(device)
    print(plain.key_averages().table(sort_by=key, row_limit=8, max_name_column_width=48), flush=True)
    opt.engine.backend.apply([(sd, -c) for sd, c in opt.last.update])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="1.7b", choices=list(CONFIGS))
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--profile", action="store_true", help="print the top operators of one batched step at the largest N")
    args = p.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIGS[args.config])).to(device=device, dtype=getattr(torch, args.dtype)).eval()
    model.requires_grad_(True)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), device=device)
    torch.set_grad_enabled(False)
    rows = []
    for n in args.sizes:
        out = {"N": n}
        for name in ("plain", "batched", "inplace"):
            samples = []
            for rep in range(args.repeats + 1):  # the first is a warm-up
                if name == "plain":
                    s, peak = timed(lambda: scores(model, ids.repeat(n, 1)), device)
                else:
                    opt = bz.MeZO(model, estimator="population", n=n // 2, noise="lowrank", evaluate=name, seed=rep)
                    closure = batched_closure(model, ids) if name == "batched" else (lambda: float(scores(model, ids).mean()))
                    s, peak = timed(lambda: opt.step(closure), device)
                    opt.engine.backend.apply([(sd, -c) for sd, c in opt.last.update])  # back near the start
                if rep:
                    samples.append(s)
            out[name] = {"seconds": sorted(samples)[len(samples) // 2], "samples": samples, "peak_bytes": peak}
        out["batched_over_plain"] = out["plain"]["seconds"] / out["batched"]["seconds"]
        out["batched_over_inplace"] = out["inplace"]["seconds"] / out["batched"]["seconds"]
        rows.append(out)
        print(f"N={n}: plain {out['plain']['seconds']:.3f}s batched {out['batched']['seconds']:.3f}s "
              f"inplace {out['inplace']['seconds']:.3f}s | batched/plain throughput {out['batched_over_plain']:.2f} "
              f"| batched vs inplace {out['batched_over_inplace']:.2f}x | peaks {[out[k]['peak_bytes'] for k in ('plain', 'batched', 'inplace')]}",
              flush=True)
    if args.profile:
        profile_batched(model, ids, max(args.sizes), device)
    payload = {"command": "python " + " ".join(sys.argv), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "config": args.config, "dtype": args.dtype, "batch": args.batch, "seq": args.seq,
               "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = Path(args.out or Path(__file__).resolve().parent / "results" / "gpu_population.json")
    path.write_text(json.dumps(payload, indent=2))
    print(path)


if __name__ == "__main__":
    main()
