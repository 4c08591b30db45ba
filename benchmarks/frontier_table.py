"""The frontier benchmark's summary: reward at each drift budget per method (held-back, mean over seeds) and the plot.

Why: one file per run (benchmarks/frontier.py) holds a dev frontier and its held-back reads; a reader wants, per
reward, each method's gain at KL <= 0.05 / 0.1 / 0.2 nats/token and the curves that the gains were chosen from.

    python benchmarks/frontier_table.py benchmarks/results/frontier_held_vader_*.json --out benchmarks/results/frontier_vader
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def method_of(run: dict) -> str:
    """The row name of a run: its recipe (ZO) or GRPO's beta and lr."""
    return f"zo {run['recipe']}" if run["method"] == "zo" else f"grpo beta {run['beta']:g} lr {run['lr']:g}"


def summarise(runs: list[dict]) -> dict:
    """Per method: reward_at_budget (budget -> mean held-back gain over seeds, None where a seed has no read),
    the seeds' gains, the chosen steps, misses of the fluency rule, the dev frontier and peak memory."""
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(method_of(run), []).append(run)
    out = {}
    for method, group in sorted(by_method.items()):
        budgets = list(group[0]["chosen"])
        held = [r.get("held", {}) for r in group]
        gains = {b: [h[b]["gain"] if b in h and not h[b]["missed"] else None for h in held] for b in budgets}
        out[method] = {
            "seeds": [r["seed"] for r in group],
            "reward_at_budget": {b: (statistics.fmean(g) if g and None not in g else None) for b, g in gains.items()},
            "gains_by_seed": gains,
            "held_kl": {b: [h[b]["kl_exact"] for h in held if b in h] for b in budgets},
            "chosen_steps": {b: [r["chosen"][b] for r in group] for b in budgets},
            "missed": {b: [h[b]["missed"] for h in held if b in h] for b in budgets},
            "steps": [r["steps"] for r in group],
            "peak_gib": max((r["peak_bytes"] for r in group if r["peak_bytes"]), default=0) / 2**30 or None,
            "dev_frontier": [[(c["kl_exact"], c["reward"] - r["curve"][0]["reward"]) for c in r["curve"]] for r in group],
        }
    return out


def plot(summary: dict, reward: str, path: Path) -> None:
    """Reward gain on dev against per-token KL, one curve per method and seed; held-back reads as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (method, s) in enumerate(summary.items()):
        colour = f"C{i}"
        for j, curve in enumerate(s["dev_frontier"]):
            ax.plot(*zip(*curve), "o-", color=colour, alpha=0.7, ms=3, label=f"{method} (dev)" if j == 0 else None)
        for b, kls in s["held_kl"].items():
            for kl, g in zip(kls, s["gains_by_seed"][b]):
                if g is not None:
                    ax.plot(kl, g, "*", color=colour, ms=10)
    for b in (0.05, 0.1, 0.2):
        ax.axvline(b, color="grey", lw=0.5, ls=":")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=0)
    ax.set_xlabel("KL(pi_theta || pi_0) per token at the answers (nats, exact)")
    ax.set_ylabel(f"{reward} gain over the untuned model")
    ax.set_title(f"{reward}: reward against drift, SmolLM2-135M, equal training time (stars: held-back reads)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True, help="path stem: writes STEM.json and STEM.png")
    args = p.parse_args(argv)
    runs = [json.loads(Path(f).read_text()) for f in args.files]
    rewards = {r["reward"] for r in runs}
    if len(rewards) != 1:
        raise SystemExit(f"one reward per summary, got {sorted(rewards)}")
    reward = rewards.pop()
    summary = summarise(runs)
    payload = {"benchmark": "frontier", "reward": reward, "files": [Path(f).name for f in args.files],
               "budget_s": sorted({r["budget_s"] for r in runs}), "machine": runs[0]["machine"],
               "methods": summary}
    Path(args.out + ".json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(summary, reward, Path(args.out + ".png"))
    plot(summary, reward, Path(__file__).resolve().parent.parent / "docs" / f"frontier_{reward}.png")  # the site's copy
    for method, s in summary.items():
        cells = "  ".join(f"KL<={b}: {'-' if v is None else f'{v:+.3f}'}" for b, v in s["reward_at_budget"].items())
        peak = "not recorded" if s["peak_gib"] is None else f"{s['peak_gib']:.2f} GiB"
        print(f"{method:40s} {cells}  peak {peak}  seeds {s['seeds']}")
    return payload


if __name__ == "__main__":
    main()
