"""A markdown table of reward_vs_grpo result files: one row per run, reward and honest gain beside the text metrics.

Why: issue 34's benchmark rows put a gain next to what tuning did to the text (held NLL under pi_0, word / token
trigram repetition, distinct-2, one sample), so a gain made of broken text reads as missed at a glance.

    python benchmarks/honest_table.py benchmarks/results/honest_personal_600s_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEADER = ("| file | method, settings | seed | budget | steps | reward (or win-rate) before -> after | NLL | rep. word / token trigrams "
          "| distinct-2 | honest gain | sample after (prompt: answer) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def settings_of(method: str, run: dict, args: dict) -> str:
    """A short description of what ran: GRPO's beta and lr, or ZO's space, lr, brake and anchor."""
    s = run.get("settings", {})
    if method == "grpo":
        return f"TRL GRPO beta {s.get('beta')}, lr {s.get('lr')}"
    spec = s.get("spec", {})
    extra = [f"lr {spec.get('lr')}"]
    if s.get("kl"):
        extra.append(f"kl {s['kl']}")
    if spec.get("anchor"):
        extra.append(f"anchor {spec['anchor']}")
    return f"ZO {s.get('tuned')}, {', '.join(extra)}"


def cells(name: str, settings: str, args: dict, steps, value: str, b: dict, a: dict, hg: dict, sample: dict) -> str:
    """One table line from what every row shares: the value before -> after beside the text before -> after."""
    return " | ".join([
        f"| {name}", settings, str(args["seed"]), f"{args['budget']:g} s", str(steps), value,
        f"{b['nll']:.2f} -> {a['nll']:.2f}",
        f"{b['repeated_trigrams']:.3f} / {b['repeated_token_trigrams']:.3f} -> "
        f"{a['repeated_trigrams']:.3f} / {a['repeated_token_trigrams']:.3f}",
        f"{b['distinct_2']:.3f} -> {a['distinct_2']:.3f}", f"**{hg['shown']}**",
        f"{sample['prompt']}: {json.dumps(sample['after'])[1:-1].replace('|', '/')} |"])


def judge_row(path: Path, data: dict) -> list[str]:
    """A preference_vs_base file: the win-rate against the untuned model (0.5 = no change) and the judge's settings."""
    args, spec = data["settings"], data["spec"]
    if "honest_gain" not in data:
        return [f"| {path.name} | judge: no honest gain recorded (a run from before issue 34) |"]
    guard = "" if args.get("fluency_slack") is None else f", guard slack {args['fluency_slack']}"
    extra = "".join(f", {k} {spec[k]}" for k in ("anchor",) if spec.get(k))
    settings = f"ZO pairwise judge, {data['tuned']}, eps {spec.get('eps')}, lr {spec.get('lr')}{guard}{extra}"
    samples = data["samples"]
    pick = samples[len(samples) // 3]
    value = f"win-rate 0.5 -> {data['win_rate']:.3f} (p = {data['p_value']:.2g})"
    return [cells(path.name, settings, args, data["steps"], value, data["text_before"], data["text_after"],
                  data["honest_gain"], {"prompt": pick["prompt"], "after": pick["tuned"]})]


def row(path: Path) -> list[str]:
    """One line per method in a result file (reward_vs_grpo or preference_vs_base)."""
    data = json.loads(path.read_text())
    if data.get("benchmark") == "preference_vs_base":
        return judge_row(path, data)
    args = data["settings"]
    lines = []
    for method, run in data["results"].items():
        if "honest_gain" not in run:
            lines.append(f"| {path.name} | {method}: {run.get('error', 'no honest gain recorded')} |")
            continue
        first, last = run["curve"][0]["heldout_reward"], run["curve"][-1]["heldout_reward"]
        lines.append(cells(path.name, settings_of(method, run, args), args, run["steps"], f"{first:.3f} -> {last:.3f}",
                           run["text_before"], run["text_after"], run["honest_gain"], run["sample_answers"][0]))
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    print(HEADER)
    for path in args.files:
        print("\n".join(row(path)))


if __name__ == "__main__":
    main()
