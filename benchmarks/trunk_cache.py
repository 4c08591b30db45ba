"""Frozen-trunk cache: seconds per ZO step over the top K decoder layers, with and without the cache.

Side by side in one process on the embedded SmolLM2-135M (float32, 30 layers): objective = label-word accuracy
of the 32-sentence built-in sentiment batch (the demo's task, no data needed), `bz.MeZO(space, maximize=True)`
with the library defaults, space = layers [30-K, 30) + final norm. "cached" scores with
`TransformersLM(..., trunk_cache=30-K)` (blackbox_zo/lm/trunk.py), "full" runs every layer. The two alternate
step by step so both see the same machine state; the median over --steps timed steps (after one warm-up step
each, which fills the cache) is reported, and the ratio full / cached per K.

    python benchmarks/trunk_cache.py                      # ~3 min on a quiet 2-core CPU
    python benchmarks/trunk_cache.py --tops 1,2,6 --steps 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tops", default="1,2,6,15", help="comma list of K: tune the top K layers (+ final norm)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per K and mode")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "trunk_cache.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from blackbox_zo import MeZO, ParamSpace
    from blackbox_zo.lm import TransformersLM, load_model
    from objectives import get_task
    from objectives.builtin import sentiment_examples

    model, tok = load_model("embedded")
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = model.config.num_hidden_layers
    batch = sentiment_examples("train", 0)[:32]
    objective = get_task("sst2").objective()
    rows = []
    for top in [int(k) for k in args.tops.split(",")]:
        first = layers - top
        include = [rf"layers\.({'|'.join(str(i) for i in range(first, layers))})\.", r"^model\.norm"]
        model.load_state_dict(start_state)
        runs = {}
        space = ParamSpace(model, include=include)  # both modes step the same tensors, alternately
        for mode, trunk in (("full", None), ("cached", first)):
            lm = TransformersLM(model, tok, batch_size=32, trunk_cache=trunk)
            runs[mode] = (lm, MeZO(space, seed=0, maximize=True), [])
        for step in range(args.steps + 1):  # step 0 warms up (and fills the cache)
            for lm, opt, times in runs.values():
                seconds, _ = common.timed(lambda: opt.step(lambda: objective.evaluate(lm, batch).value))
                if step:
                    times.append(seconds)
        med = {mode: common.median(times) for mode, (_, _, times) in runs.items()}
        row = {"top_layers": top, "tuned_elements": space.numel(), "full_s": med["full"], "cached_s": med["cached"], "speedup": med["full"] / med["cached"],
               "samples": {mode: times for mode, (_, _, times) in runs.items()}}
        rows.append(row)
        print(f"top {top:2d} layers: full {med['full']:.3f} s/step, cached {med['cached']:.3f} s/step, "
              f"x{row['speedup']:.1f}", flush=True)
    payload = {"command": "python benchmarks/trunk_cache.py " + " ".join(argv or sys.argv[1:]),
               "machine": common.machine_info(), "commit": common.git_commit(),
               "threads": torch.get_num_threads(), "rows": rows}
    print("results:", common.write_results("trunk_cache", payload, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
