"""Generate benchmarks/RESULTS.md: one row per headline figure with its command, commit, machine, date and file.

Why: the figures the README and QUALITY.md quote are spread over ~100 JSON files with three metadata layouts;
this reads them (or a `<name>.meta.json` sidecar where a file recorded none) so every figure can be traced.

    python benchmarks/results_index.py           # rewrite benchmarks/RESULTS.md
    python benchmarks/results_index.py --check   # exit 1 if RESULTS.md is not what this script generates
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "RESULTS.md"
DOCS = ["README.md", "benchmarks/README.md", "benchmarks/QUALITY.md", "docs/*.md"]
UNKNOWN = "unknown"

# (target, figure as the docs quote it, files it comes from; "" when no file was written)
HEADLINES = [
    ("memory", "ZO step peak / inference peak, SmolLM2-135M: 1.069 (AdamW 2.68, GRPO 2.52)", ["memory.json"]),
    ("step overhead", "ZO step / its 2 evaluations: 1.176 (MeZO Alg. 1 as written: 1.570)", ["step_overhead.json"]),
    ("step overhead", "same with noise=\"lowrank\": 1.027 (Gaussian 1.146, loaded machine)", ["step_overhead_lowrank.json"]),
    ("trunk cache", "s per step over the top 2 layers: 2.52 -> 0.33 (7.6x)", ["trunk_cache.json"]),
    ("momentum state", "update s / state: window 8 1.67 s / 128 B; dense 0.57 s / 513 MB; Adam 1.27 s / 1026 MB",
     ["momentum_tradeoff.json"]),
    ("SST-2 k=16", "zero-shot 51.1 %, content-free calibrated 66.6 %; ZO defaults plain accuracy 63.3 %",
     ["quality_sst2_k16_600s_zo_plain.json"]),
    ("SST-2 k=16", "ZO defaults, all weights, calibrated accuracy: 64.4 +- 1.3 % (3 seeds, 600 s)",
     ["quality_sst2_k16_600s_zo_cf.json"]),
    ("SST-2 k=16", "ZO top 2 layers, cross-entropy, eps 0.01: 68.7 +- 5.1 % (3 seeds, 600 s)",
     ["quality_sst2_k16_600s_zo_top2_ce.json"]),
    ("SST-2 k=16", "ZO defaults, top 2 layers, calibrated accuracy: 66.2 +- 2.6 % (3 seeds, 600 s)",
     ["quality_sst2_k16_600s_zo_top2_acc_cf.json"]),
    ("SST-2 k=16", "AdamW backprop: 75.8 +- 2.1 % (3 seeds, 600 s; rerun 74.0 / 78.1 / 75.2 %)",
     ["quality_sst2_k16_600s_ft.json", "quality_sst2_k16_600s_ft_r2.json"]),
    ("SST-2 k=16", "ZO final norm, cross-entropy, radius_window: 64.4 +- 5.8 % plain (3 seeds, 600 s)",
     ["quality_sst2_k16_600s_zo_norm_ce_trend.json"]),
    ("SST-2 k=512", "AdamW 81.9 %; ZO top-2 cross-entropy 66.6 %; ZO defaults 61.8 % (calibrated; one seed, 600 s)",
     ["quality_sst2_k512_600s_ft.json", "quality_sst2_k512_600s_zo_top2_ce.json", "quality_sst2_k512_600s_zo_cf.json"]),
    ("VADER reward", "ZO defaults, all weights: -0.016 +- 0.020 (3 seeds, 600 s, 1.09-1.10 GiB)",
     [f"reward_vader_600s_zo_s{s}.json" for s in range(3)]),
    ("VADER reward", "TRL GRPO: +0.465 +- 0.031 (3 seeds, 600 s, 3.09-3.16 GiB)",
     [f"reward_vader_600s_grpo_s{s}.json" for s in range(3)]),
    ("VADER reward", "ZO defaults, steering vectors after layers 10 and 20: +0.491 +- 0.059 (3 seeds, 1.11-1.12 GiB)",
     [f"reward_vader_600s_zo_steer2_s{s}.json" for s in range(3)]),
    ("VADER reward", "ZO steering vectors 10 and 20, batched (issue 20): +0.543 +- 0.022; in place side by side +0.483 +- 0.065 "
     "(3 seeds, 1.14-1.18 GiB)", [f"reward_vader_600s_zo_steer2_{m}_s{s}.json" for m in ("batched", "inplace") for s in range(3)]),
    ("VADER reward", "TRL GRPO rerun beside it: +0.497 +- 0.013 (3 seeds, 3.13-3.18 GiB)",
     [f"reward_vader_600s_grpo_r2_s{s}.json" for s in range(3)]),
    ("keyword reward", "ZO steering vectors (10, 20): +0.356 (1.11 GiB) vs TRL GRPO +0.476 (3.05 GiB), one seed",
     ["reward_personal_600s_zo_steer2_s0.json", "reward_personal_600s_grpo_r2_s0.json"]),
    ("keyword reward", "ZO steering vectors 10 and 20, batched (issue 20): +0.495 vs in place side by side +0.350, one seed",
     [f"reward_personal_600s_zo_steer2_{m}_s0.json" for m in ("batched", "inplace")]),
    ("keyword reward", "ZO steering 10 and 20, batched: +0.464 +- 0.055 vs TRL GRPO +0.500 +- 0.069 (3 seeds; 1.13-1.18 / "
     "3.05-3.16 GiB)", [f"reward_personal_600s_{m}_s{s}.json" for m in ("zo_steer2_batched", "grpo_r2") for s in range(3)]),
    ("GPU step (H200)", "7B bf16 step / 2 forwards 1.87 (masters) / 1.77 (none), noise pass 1.59x / 2.40x the floor; "
     "1.7B fp32 1.14", ["gpu_step_7b.json", "gpu_step_1.7b.json"]),
    ("GPU population (H200)", "1.7B bf16 batched step 0.289 / 1.099 s vs in place 0.402 / 1.744 s (N = 8 / 32); "
     "0.49-0.53x plain inference", ["gpu_population.json"]),
    ("population throughput", "CPU batched / plain inference 0.86 / 0.87 / 0.80 at N = 8 / 32 / 128 (one thread)",
     ["population_throughput_session8.json"]),
    ("population throughput", "CPU, two threads, quiet, N = 32: 0.59 / 0.86 / 0.62 (session-7 code beside it: 0.60 / 0.54)",
     [f"population_throughput_session8_2t_{x}.json" for x in "abc"] +
     [f"population_throughput_session7code_2t_{x}.json" for x in "bc"]),
    ("population throughput", "CPU, two threads, quiet, N = 32, tables built for all matrices at once (session 9): 0.80 / 0.80",
     [f"population_throughput_session9_2t_quiet_{x}.json" for x in "ab"]),
    ("SST-2 k=16", "five dev-chosen prompts calibrated with the training inputs + 5 CMA-ES generations: 83.9 +- 0.4 % "
     "(untuned 83.6 +- 0.5) vs AdamW 85.2 +- 1.2 as trained / 86.4 +- 0.6 read the same way (3 seeds)",
     ["quality_sst2_k16_prompt_ensemble_test.json"]),
    ("SST-2 k=512", "the same recipe: 83.9 +- 0.4 % (untuned 84.1 +- 0.1, 3 seeds) vs AdamW 87.0 % (one seed, earlier run)",
     ["quality_sst2_k512_prompt_ensemble_test.json"]),
    ("built-in tasks k=16", "reviews 98.6 % vs AdamW 99.8 +- 0.3; news topics 95.7 +- 0.2 % vs AdamW 99.1 +- 0.2 (3 seeds)",
     ["quality_builtin_sentiment_k16.json", "quality_builtin_topics_k16.json"]),
    ("step overhead", "ZO step / its 2 evaluations, quiet, end of session 8: 1.259 (low-rank 1.021, Algorithm 1 2.040)",
     ["step_overhead_session8_quiet.json"]),
    ("keyword reward", "ZO defaults, all weights: +0.003 vs TRL GRPO +0.434, one seed",
     ["reward_personal_600s_zo_s0.json", "reward_personal_600s_grpo_s0.json"]),
    ("guarded judge", "win-rate vs the base model 0.672 / 0.969 / 0.750 (3 seeds, every p < 0.01, 1.07-1.09 GiB)",
     ["preference_600s_guarded.json", "preference_600s_guarded_s1.json", "preference_600s_guarded_s2.json"]),
    ("population", "member evaluations/s, batched / plain inference on the same rows at N = 8 / 32 / 128: 0.60 / 0.70 / 0.51; "
     "batched / in-place low-rank 2.36 / 3.16 / 2.67 (SmolLM2-135M, float32)", ["population_throughput.json"]),
    ("memory", "bfloat16 step peak / inference: batched low-rank population 1.03x, in place with float32 masters 1.60x "
     "(float32: 1.04x / 1.00x)", ["population_memory_bfloat16.json", "population_memory_float32.json"]),
    ("guarded judge", "all weights, seed 0, side by side: low-rank batched win-rate 0.984 (by short-word babble, word length "
     "4.44 -> 2.56) vs Gaussian in place 0.587 (p = 0.21)",
     ["preference_600s_guarded_lowrank_batched_s0.json", "preference_600s_guarded_default_rerun_s0.json"]),
    ("guarded judge", "fluency guard (session 10, AMD, 600 s, side by side): no guard 0.719 in 43 steps, held NLL 0.93 -> 1.50 "
     "(answers degrade); guarded 0.474 / 0.561 / 0.412 in 27-32 steps, NLL 1.06 / 1.04 / 0.94 (fluent, no win)",
     ["preference_600s_guarded_lowrank_batched_amd_s0.json", "preference_600s_guarded_fluent_lowrank_batched_s0.json",
      "preference_600s_guarded_fluent_bare_lowrank_batched_s0.json", "preference_600s_guarded_fluent_bare_lowrank_batched_s1.json"]),
    ("guarded judge", "fluency guard at 70 steps (session 10, AMD, seed 0, side by side): guarded 0.672 (p = 0.008), held NLL "
     "0.93 -> 1.39, fluent; no guard 0.875 at NLL 2.58, broken text",
     ["preference_guarded_fluent_bare_lowrank_batched_70steps_s0.json", "preference_guarded_lowrank_batched_amd_70steps_s0.json"]),
    ("keyword reward", "AMD, 600 s, side by side: ZO steering 10 and 20, lr 6e-4 (dev-chosen) +0.432 +- 0.150 (56-63 steps, "
     "degenerate text) vs TRL GRPO +0.162 +- 0.016 (23-27 steps)",
     [f"reward_personal_600s_{m}_amd_s{s}.json" for m in ("zo_steer2_lr6e-4", "grpo") for s in range(3)]),
    ("guarded judge", "steering after layer 10 under the guard, radius fixed at 0.002 (sessions 11-12, AMD, 600 s): 64 test "
     "prompts 0.650 / 0.656 / 0.633; 192 held-back prompts (test + test2) 0.575 / 0.578 / 0.707 (p 0.053 / 0.044 / 2e-8), "
     "held NLL 0.89 -> 0.99-1.12",
     [f"preference_600s_steer10_guard025_rep01_eps0.002_fixed_s{s}.json" for s in range(3)]
     + [f"preference_600s_steer10_guard025_rep01_eps0.002_fixed_test192_s{s}.json" for s in range(3)]),
    ("demo task", "`blackbox-zo demo`: validation accuracy 0.685 -> 0.866 in 50 steps (README, Results)", []),
    ("ZO-Bench features", "held-out accuracy of each feature vs the default at equal forward passes (tiny MLP)",
     ["zo_bench_features.json"]),
]


def load(name: str) -> dict:
    """The file's metadata; a `<stem>.meta.json` sidecar fills what the file did not record."""
    path = RESULTS / name
    data = json.loads(path.read_text()) if path.suffix == ".json" else {}
    sidecar = path.with_name(path.stem + ".meta.json")
    extra = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    cpu = machine.get("cpu") or machine.get("lscpu_model_name")
    cores = machine.get("cores")
    return {
        "command": extra.get("command") or machine.get("command") or data.get("command") or UNKNOWN,
        "commit": extra.get("commit") or data.get("git") or data.get("commit") or UNKNOWN,
        "machine": extra.get("machine") or gpu_first(data.get("gpu") or data.get("device"),
                                                     f"{cpu}, {cores} cores" if cpu and cores else cpu) or UNKNOWN,
        "date": extra.get("date") or data.get("date") or machine.get("date") or UNKNOWN,
    }


def gpu_first(gpu, host: str | None) -> str | None:
    """'NVIDIA H200 (host: Xeon, 16 cores)' for a GPU run, else the host alone (a CPU run records device 'cpu')."""
    if isinstance(gpu, str) and gpu and gpu != "cpu":
        return f"{gpu} (host: {host})" if host else gpu
    return host


def clean_command(cmd: str) -> str:
    """Drop `--out PATH` (the file column says where the result lives) and an absolute interpreter path."""
    cmd = re.sub(r"\s--out\s+\S+", "", cmd)
    return cmd if cmd.startswith(("OMP_NUM_THREADS", "python", "blackbox-zo", UNKNOWN)) else "python " + cmd


def joined(values: list[str]) -> str:
    return ", ".join(dict.fromkeys(values))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def headline_rows() -> list[str]:
    rows = []
    for target, figure, files in HEADLINES:
        metas = [load(f) for f in files]
        commands = joined([f"`{clean_command(m['command'])}`" for m in metas]) if metas else "see the figure's document"
        rows.append("| " + " | ".join(cell(c) for c in [
            target, figure, commands,
            joined([m["commit"] for m in metas]) or "not recorded",
            joined([m["machine"] for m in metas]) or "not recorded (README: 2-core machine)",
            joined([m["date"][:10] for m in metas]) or "not recorded",
            "<br>".join(f"`results/{f}`" for f in files) or "none written",
        ]) + " |")
    return rows


def doc_text() -> str:
    paths = [p for pattern in DOCS for p in sorted(ROOT.glob(pattern))]
    return "\n".join(p.read_text() for p in paths)


def reference_patterns(text: str) -> list[re.Pattern]:
    """Every `results/...` a document names, as a regex: NAME/$s/*/{a,b}/[...] stand for what they stand for."""
    out = []
    for ref in re.findall(r"results/([A-Za-z0-9_.{},*$\[\]-]+)", text):
        ref = ref.rstrip(".,")
        rx = re.escape(ref)
        rx = rx.replace(r"\$s", r"\d+").replace(r"\*", ".*")
        rx = re.sub(r"\\\{([^}]*)\\\}", lambda m: "(" + m.group(1).replace(",", "|") + ")", rx)
        rx = re.sub(r"\\\[([^\]]*)\\\]", r"(\1)?", rx)
        rx = re.sub(r"[A-Z]{1,6}", "[A-Za-z0-9_.-]+", rx)
        out.append(re.compile(rx + r"(\.\w+)?$"))
    return out


def unreferenced() -> list[str]:
    """Results files no document names, by path pattern or by their stem in the text."""
    text = doc_text()
    patterns = reference_patterns(text)
    named = []
    for path in sorted(RESULTS.iterdir()):
        if path.name.endswith(".meta.json"):
            continue
        stem = path.name.split(".")[0]
        as_json = stem + ".json"  # a plot is named with its run's JSON
        if any(p.match(path.name) or p.match(as_json) for p in patterns) or re.search(rf"(?<![\w-]){re.escape(stem)}(?![\w-])", text):
            continue
        named.append(path.name)
    return named


def render() -> str:
    lines = [
        "# Results index",
        "",
        "Generated by `python benchmarks/results_index.py` from the results files' own metadata (or a",
        "`<name>.meta.json` sidecar where a file recorded none); do not edit by hand: `tests/test_results_index.py`",
        "fails when this file is not what the script writes. `unknown` means the run did not record it. Commands",
        "are shown without their `--out` argument: the last column is where the result lives.",
        "",
        "| target | figure | command | commit | machine | date | file |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *headline_rows(),
        "",
        "## Results files no document names",
        "",
        *([f"* `results/{name}`" for name in unreferenced()] or ["None: README.md, benchmarks/*.md or docs/ name every file."]),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if benchmarks/RESULTS.md is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        ok = OUT.exists() and OUT.read_text() == text
        print("benchmarks/RESULTS.md is up to date" if ok else "benchmarks/RESULTS.md is stale: run python benchmarks/results_index.py")
        return 0 if ok else 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
