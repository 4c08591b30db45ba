"""Peak memory of one zeroth-order step vs one inference forward vs one AdamW backprop step (vs one TRL GRPO step).

Every (model size, method) pair runs in a FRESH Python process, so one method's peak cannot contaminate
another's. Inside it the model is built, then the kernel's peak-RSS mark (VmHWM) is reset and exactly one
step of the method runs; the reported number is that absolute peak (weights, activations, optimizer state,
interpreter and torch included; nothing subtracted).

  zo         blackbox_zo.MeZO(model, lr, eps, seed).step(closure), two-sided SPSA, closure = forward loss
             (bfloat16: float32 masters, the in-place default)
  zo_nomasters  the same with master_weights=False (in place, round-to-nearest)
  zo_batched    noise="lowrank", estimator="population", n=4: 8 members applied at use time (hooks), the
             weights written once, no masters, stochastic rounding (the closure calls the model itself, so
             the members run one at a time: the peak of one member's forward plus the low-rank factors)
  inference  the same forward loss under torch.no_grad()
  adam       loss.backward() + torch.optim.AdamW.step() (state allocated on this first step, as in training)
  grpo       one trl.GRPOTrainer step (generation + backward + AdamW), embedded 135M only, tiny settings

Sizes: the embedded SmolLM2-135M (real weights) and randomly initialised float32 Llama models of the same
family (memory does not depend on weight values). A run whose predicted peak exceeds the memory available
right now is skipped, not attempted; a linear fit peak = a + b * params per method extrapolates the largest
model each method fits in this machine's RAM.

    python benchmarks/memory.py                 # all sizes, all methods (~6-9 min on a 2-core CPU)
    python benchmarks/memory.py --sizes 135m --methods zo,inference
    python benchmarks/memory.py --sizes 135m,360m --methods inference,zo,zo_nomasters,zo_batched --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

# SmolLM2 shapes (135M, 360M, 1.7B from the published configs); "1b" sits between them (SmolLM2-style
# 2048-wide GQA model with 20 layers). All tie the input and output embeddings, vocab 49152.
SIZES = {
    "135m": None,  # the embedded SmolLM2-135M-Instruct
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=32, num_key_value_heads=8),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32),
}
METHODS = ("inference", "zo", "zo_nomasters", "zo_batched", "adam", "grpo")
# rough bytes per parameter of each method's peak (float32), only used to refuse runs that cannot fit
BYTES_PER_PARAM = {"inference": 4.3, "zo": 4.3, "zo_nomasters": 4.3, "zo_batched": 4.3, "adam": 16.5, "grpo": 17.0}
APPROX_PARAMS = {"135m": 134.5e6, "360m": 361.8e6, "1b": 1.01e9, "1.7b": 1.71e9}
BASE_BYTES = 0.6 * common.GiB  # interpreter + torch + transformers, measured ~0.5 GiB


# --- worker: one method, one size, one process -------------------------------------------------------
def build_model(size: str, dtype: str = "float32"):
    import torch

    if SIZES[size] is None:
        from blackbox_zo.lm import load_model

        model, _ = load_model(dtype=dtype)
        return model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=2048,
                      rms_norm_eps=1e-5, **SIZES[size])
    model = LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    return model.eval()


def worker(args) -> dict:
    import torch

    t0 = time.perf_counter()
    if args.method == "grpo":
        return grpo_worker(args)
    model = build_model(args.size, args.dtype)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)

    def loss() -> torch.Tensor:
        return model(input_ids=batch, labels=batch).loss

    if args.method == "inference":
        def region():
            with torch.no_grad():
                return float(loss())
    elif args.method.startswith("zo"):
        import blackbox_zo

        extra = {"zo": {}, "zo_nomasters": {"master_weights": False},
                 "zo_batched": {"noise": "lowrank", "estimator": "population", "n": 4}}[args.method]
        opt = blackbox_zo.MeZO(model, lr=1e-6, eps=1e-3, seed=0, **extra)

        def region():
            return opt.step(lambda: float(loss()))
    elif args.method == "adam":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def region():
            value = loss()
            value.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(value)
    else:
        raise ValueError(args.method)
    setup_s = time.perf_counter() - t0
    res = common.measure_peak(region)
    return {"method": args.method, "size": args.size, "params": n_params, "setup_s": setup_s, **res}


def grpo_worker(args) -> dict:
    import tempfile

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from blackbox_zo.lm import load_model

    t0 = time.perf_counter()
    if args.size != "135m":
        raise SystemExit("grpo is measured on the embedded 135M model only")
    model, tok = load_model()
    n_params = sum(p.numel() for p in model.parameters())
    prompts = [f"Write a short happy sentence number {i}:" for i in range(args.batch)]
    data = Dataset.from_dict({"prompt": prompts})

    def reward_len(completions, **kwargs):
        return [-abs(len(c) - 20) / 20.0 for c in completions]

    out = tempfile.mkdtemp(prefix="bbzo-grpo-")
    cfg = GRPOConfig(
        output_dir=out, max_steps=1, per_device_train_batch_size=args.batch, num_generations=2,
        max_completion_length=args.grpo_completion, learning_rate=1e-5, beta=args.grpo_beta, report_to="none",
        save_strategy="no", logging_steps=1, use_cpu=True, bf16=False, fp16=False, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward_len, args=cfg, train_dataset=data, processing_class=tok)
    setup_s = time.perf_counter() - t0
    res = common.measure_peak(trainer.train)
    return {"method": "grpo", "size": "135m", "params": n_params, "setup_s": setup_s, "grpo_beta": args.grpo_beta,
            "grpo_settings": {"num_generations": 2, "prompts": args.batch // 2, "completions": args.batch,
                              "max_completion_length": args.grpo_completion}, **res}


# --- driver ------------------------------------------------------------------------------------------
def fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="135m,360m,1b,1.7b", help=f"comma list from {list(SIZES)} (default: all)")
    p.add_argument("--methods", default="inference,zo,adam,grpo", help=f"comma list from {list(METHODS)}")
    p.add_argument("--batch", type=int, default=4, help="sequences per batch (default 4)")
    p.add_argument("--seq", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model dtype (default float32)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per (size, method) for the 135M model; median reported (default 3)")
    p.add_argument("--big-repeats", type=int, default=1, help="fresh processes per (size, method) for the larger random models (default 1)")
    p.add_argument("--grpo-completion", type=int, default=16, help="GRPO max completion length in tokens (default 16)")
    p.add_argument("--grpo-beta", type=float, default=0.0, help="GRPO KL weight; > 0 also loads a reference model (default 0.0, TRL's default)")
    p.add_argument("--ram-gib", type=float, default=None, help="RAM budget for the extrapolation (default: this machine's MemTotal)")
    p.add_argument("--margin-gib", type=float, default=1.5, help="skip a run whose predicted peak exceeds MemAvailable minus this (default 1.5)")
    p.add_argument("--out", default=None, help="JSON results path (default benchmarks/results/memory.json)")
    p.add_argument("--no-plot", action="store_true", help="do not write benchmarks/results/memory.png")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)), flush=True)
        return 0

    sizes = [s for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    for s in sizes:
        if s not in SIZES:
            p.error(f"unknown size {s!r}; choose from {list(SIZES)}")
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {list(METHODS)}")
    ram = (args.ram_gib * common.GiB) if args.ram_gib else common.mem_total_bytes()
    info = common.machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB; batch {args.batch} x {args.seq} tokens, {args.dtype}")

    rows = []
    for size in sizes:
        for method in methods:
            if method == "grpo" and size != "135m":
                continue
            repeats = args.repeats if size == "135m" else args.big_repeats
            predicted = BASE_BYTES + BYTES_PER_PARAM[method] * APPROX_PARAMS[size]
            avail = common.mem_available_bytes()
            row = {"size": size, "method": method, "predicted_peak_bytes": predicted}
            if predicted > avail - args.margin_gib * common.GiB:
                row["skipped"] = (f"predicted peak {common.gib(predicted)} GiB > available {common.gib(avail)} GiB "
                                  f"minus {args.margin_gib} GiB margin")
                print(f"{size:>5} {method:<9} skipped: {row['skipped']}", flush=True)
                rows.append(row)
                continue
            runs = []
            for r in range(repeats):
                wargs = ["--worker", method, "--size", size, "--batch", str(args.batch), "--seq", str(args.seq), "--dtype", args.dtype,
                         "--grpo-beta", str(args.grpo_beta), "--grpo-completion", str(args.grpo_completion)]
                res = common.run_fresh(Path(__file__).resolve(), wargs)
                if "error" in res:
                    row["error"] = res
                    print(f"{size:>5} {method:<9} FAILED: {res['error']}\n{res['stderr_tail']}", flush=True)
                    break
                runs.append(res)
                print(f"{size:>5} {method:<9} run {r + 1}/{repeats}: peak {common.gib(res['peak_bytes'])} GiB "
                      f"(before {common.gib(res['rss_before_bytes'])}), step {res['seconds']:.1f} s", flush=True)
            if runs:
                row.update(params=runs[0]["params"], runs=runs,
                           peak_bytes=common.median([r["peak_bytes"] for r in runs]),
                           step_s=common.median([r["seconds"] for r in runs]),
                           peak_scope=runs[0]["peak_scope"])
            rows.append(row)

    # ratios against inference at the same size
    table = {}
    for row in rows:
        table.setdefault(row["size"], {})[row["method"]] = row
    for by in table.values():
        inf = by.get("inference", {}).get("peak_bytes")
        for row in by.values():
            if inf and row.get("peak_bytes"):
                row["ratio_vs_inference"] = row["peak_bytes"] / inf

    # linear fits and the largest model that fits in RAM
    fits = {}
    for m in methods:
        pts = [(r["params"], r["peak_bytes"]) for r in rows if r["method"] == m and r.get("peak_bytes")]
        if len(pts) >= 2 and m != "grpo":
            a, b = fit_line([x for x, _ in pts], [y for _, y in pts])
            fits[m] = {"intercept_bytes": a, "bytes_per_param": b, "max_params_in_ram": (ram - a) / b,
                       "points": len(pts)}
    for m, f in fits.items():  # fill in skipped rows with the extrapolated peak
        for r in rows:
            if r["method"] == m and not r.get("peak_bytes"):
                r["extrapolated_peak_bytes"] = f["intercept_bytes"] + f["bytes_per_param"] * APPROX_PARAMS[r["size"]]

    print("\nsize   params    " + "  ".join(f"{m:>16}" for m in methods))
    for size, by in table.items():
        params = next((r["params"] for r in by.values() if r.get("params")), APPROX_PARAMS[size])
        cells = []
        for m in methods:
            r = by.get(m)
            if r is None:
                cells.append(f"{'':>16}")
            elif r.get("peak_bytes"):
                ratio = r.get("ratio_vs_inference")
                cells.append(f"{common.gib(r['peak_bytes']):>7} ({ratio:.2f}x)" if ratio else f"{common.gib(r['peak_bytes']):>16}")
            elif r.get("extrapolated_peak_bytes"):
                cells.append(f"~{common.gib(r['extrapolated_peak_bytes']):>6} (extrap)")
            else:
                cells.append(f"{'skipped/failed':>16}")
        print(f"{size:<6} {params / 1e6:7.1f}M  " + "  ".join(cells))
    for m, f in fits.items():
        print(f"fit {m:<9}: peak = {common.gib(f['intercept_bytes'])} GiB + {f['bytes_per_param']:.2f} B/param "
              f"-> largest model in {ram / common.GiB:.1f} GiB: {f['max_params_in_ram'] / 1e9:.2f} B params")

    payload = {"benchmark": "memory", "machine": info, "git": common.git_commit(),
               "settings": {"batch": args.batch, "seq": args.seq, "dtype": args.dtype, "repeats": args.repeats,
                            "big_repeats": args.big_repeats, "grpo_beta": args.grpo_beta, "grpo_completion": args.grpo_completion, "ram_bytes": ram},
               "rows": rows, "fits": fits}
    path = common.write_results("memory", payload, args.out)
    print(f"results: {path}")
    if not args.no_plot:
        try:
            plot(rows, fits, ram, path.with_suffix(".png"))
            print(f"plot: {path.with_suffix('.png')}")
        except Exception as e:  # a plot is a nicety; never lose the numbers over it
            print(f"(no plot: {e})")
    return 0


def plot(rows, fits, ram, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"inference": "tab:gray", "zo": "tab:blue", "adam": "tab:red", "grpo": "tab:orange"}
    xmax = 2.0e9
    for m in colors:
        pts = sorted((r["params"], r["peak_bytes"]) for r in rows if r["method"] == m and r.get("peak_bytes"))
        if not pts:
            continue
        ax.plot([x / 1e9 for x, _ in pts], [y / common.GiB for _, y in pts], "o", color=colors[m], label=m)
        if m in fits:
            f = fits[m]
            xs = [0, max(xmax, min(f["max_params_in_ram"], 8e9))]
            ax.plot([x / 1e9 for x in xs], [(f["intercept_bytes"] + f["bytes_per_param"] * x) / common.GiB for x in xs],
                    "--", color=colors[m], lw=1)
    ax.axhline(ram / common.GiB, color="k", lw=0.8)
    ax.text(0.02, ram / common.GiB * 1.01, f"RAM {ram / common.GiB:.0f} GiB", fontsize=8)
    ax.set_xlabel("parameters (billions, float32)")
    ax.set_ylabel("peak RSS of one step (GiB)")
    ax.set_title("Peak memory per step, 2-core CPU, batch 4 x 64")
    ax.set_ylim(0, ram / common.GiB * 1.15)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
