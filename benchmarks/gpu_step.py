"""GPU step cost (issue 21): forward, ZO step, noise pass vs the memory floor, and peak memory, per storage mode.

Random-init Llama shapes from transformers' LlamaConfig (no download), batch 8 x 256 tokens. For float32,
bf16 with float32 masters and bf16 without masters, and for the fused Philox kernel (noise_kernel.py) vs
the chunked torch-generator path of noise.py, it measures:
  forward      median time of one forward loss (no grad)
  step         median wall time of MeZO(rule="raw").step(closure) and its ratio to the 2 forwards inside it
  noise pass   one ParamSpace.apply([(seed, eps)]) vs the floor: one in-place multiply over the stored
               weights (the model's tensors, and the float32 masters where kept): read + write once
  peak         torch.cuda.max_memory_allocated of a ZO step / of an inference forward
With `--vllm-model DIR` (a local Hugging Face model; vLLM needs its tokenizer) and `vllm` importable, it
also times the vLLM backend's zo_apply. Without CUDA it exits with status 2 and says so.

    python benchmarks/gpu_step.py                 # 1.7B-like, ~2-3 min of GPU time
    python benchmarks/gpu_step.py --config 7b     # 7B-like as well (add ~3 min)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import torch  # noqa: E402

CONFIGS = {  # Llama shapes: SmolLM2-1.7B-like and Llama-2-7B-like
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=49152),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}
MODES = {"fp32": ("float32", None), "bf16-masters": ("bfloat16", True), "bf16-nomasters": ("bfloat16", False)}


def cuda_time(fn) -> float:
    """Seconds of fn() with the GPU drained before and after (CUDA work is asynchronous)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


@contextlib.contextmanager
def noise_path(path: str):
    """'kernel': the fused Philox kernel (the default on CUDA); 'torch': the chunked generator path, forced by
    hiding triton from noise_kernel (a benchmark-only switch: the library selects by device alone)."""
    from blackbox_zo.weights import noise_kernel

    saved = noise_kernel.triton
    if path == "torch":
        noise_kernel.triton = None
    try:
        yield
    finally:
        noise_kernel.triton = saved


def build_model(name: str, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**CONFIGS[name], max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(dtype)
    return model.eval()


def measure_mode(model, mode: str, path: str, batch: torch.Tensor, repeats: int) -> dict:
    """One storage mode on one noise path: forward, step, noise pass, floor, peaks."""
    import blackbox_zo

    _, masters = MODES[mode]
    inside: list[float] = []

    def closure() -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = float(model(input_ids=batch, labels=batch).loss)  # float() waits for the GPU
        inside.append(time.perf_counter() - t)
        return loss

    with torch.no_grad(), noise_path(path):
        closure()
        fwd = [cuda_time(closure) for _ in range(repeats)]
        torch.cuda.reset_peak_memory_stats()
        closure()
        infer_peak = torch.cuda.max_memory_allocated()
        opt = blackbox_zo.MeZO(model, lr=1e-6, eps=1e-3, seed=0, rule="raw", master_weights=masters)
        space = opt.engine.backend
        opt.step(closure)  # warm-up: kernel compilation, allocator
        torch.cuda.reset_peak_memory_stats()
        steps, ratios = [], []
        for _ in range(repeats):
            inside.clear()
            steps.append(cuda_time(lambda: opt.step(closure)))
            ratios.append(steps[-1] / sum(inside))
        step_peak = torch.cuda.max_memory_allocated()
        noise = [cuda_time(lambda: space.apply([(12345, 1e-3)])) for _ in range(repeats)]
        space.apply([(12345, -1e-3 * repeats)])
        stored = [p.detach() for p in space.tensors.values()] + list(space.masters.values())
        floor = [cuda_time(lambda: torch._foreach_mul_(stored, 1.0)) for _ in range(repeats)]
        stream = space.generator_id()
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    med = common.median
    return {
        "mode": mode, "path": path, "stream": stream, "forward_s": med(fwd), "step_s": med(steps),
        "step_over_2_forwards": med(ratios), "noise_pass_s": med(noise), "floor_s": med(floor),
        "noise_over_floor": med(noise) / med(floor), "noise_gb_per_s": 2 * nbytes / med(noise) / 1e9,
        "peak_step_gib": step_peak / common.GiB, "peak_inference_gib": infer_peak / common.GiB,
        "peak_ratio": step_peak / infer_peak, "samples": {"forward": fwd, "step": steps, "noise": noise, "floor": floor},
    }


def measure_vllm(model_dir: str, repeats: int) -> dict:
    """Median seconds of one zo_apply on the vLLM backend (bf16 engine, masters by default)."""
    from blackbox_zo.vllm import VLLMBackend

    backend = VLLMBackend(model_dir, dtype="bfloat16")
    try:
        backend.apply([(1, 1e-3)])
        samples = [cuda_time(lambda: backend.apply([(12345, 1e-3)])) for _ in range(repeats)]
        return {"model": model_dir, "apply_s": common.median(samples), "samples": samples, "stream": backend.generator_id()}
    finally:
        backend.close()


def table(rows: list[dict]) -> str:
    head = "| config | mode | path | fwd s | step s | step/2fwd | noise s | floor s | noise/floor | GB/s | peak step/infer |"
    out = [head, "|" + " --- |" * 11]
    for r in rows:
        out.append(f"| {r['config']} | {r['mode']} | {r['path']} | {r['forward_s']:.4f} | {r['step_s']:.4f} | "
                   f"{r['step_over_2_forwards']:.3f} | {r['noise_pass_s']:.4f} | {r['floor_s']:.4f} | "
                   f"{r['noise_over_floor']:.2f} | {r['noise_gb_per_s']:.0f} | {r['peak_ratio']:.3f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="1.7b", help="comma list of " + ", ".join(CONFIGS) + " (default 1.7b)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--paths", default="kernel,torch", help="comma list of kernel, torch (default both)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vllm-model", default=None, help="local HF model dir: also time the vLLM backend's apply")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_step.json)")
    args = p.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_step.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine; nothing measured.")
        return 2
    bad = [c for c in args.config.split(",") if c not in CONFIGS] + [m for m in args.modes.split(",") if m not in MODES]
    bad += [q for q in args.paths.split(",") if q not in ("kernel", "torch")]
    if bad:
        print(f"unknown --config/--modes/--paths value(s): {bad}")
        return 2
    rows = []
    for name in args.config.split(","):
        for dtype_name in dict.fromkeys(MODES[m][0] for m in args.modes.split(",")):
            model = build_model(name, getattr(torch, dtype_name))
            batch = torch.randint(0, CONFIGS[name]["vocab_size"], (args.batch, args.seq), device="cuda")
            for mode in [m for m in args.modes.split(",") if MODES[m][0] == dtype_name]:
                for path in args.paths.split(","):
                    rows.append({"config": name, **measure_mode(model, mode, path, batch, args.repeats)})
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    gc.collect()  # the step's optimizer and masters are gone with measure_mode's frame
                    torch.cuda.empty_cache()
            del model
            gc.collect()
            torch.cuda.empty_cache()
    vllm = None
    try:
        import vllm as _  # noqa: F401

        vllm = measure_vllm(args.vllm_model, args.repeats) if args.vllm_model else "skipped: pass --vllm-model DIR"
    except ImportError:
        vllm = "skipped: vllm does not import"
    print(table(rows))
    print(f"vllm: {vllm}")
    payload = {"machine": common.machine_info(), "gpu": torch.cuda.get_device_name(), "git": common.git_commit(),
               "batch": args.batch, "seq": args.seq, "rows": rows, "vllm": vllm}
    print("results:", common.write_results("gpu_step", payload, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
