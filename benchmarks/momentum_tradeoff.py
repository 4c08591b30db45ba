"""Momentum and Adam: dense state vs replaying a window of past (seed, coeff) pairs, measured side by side.

Dense momentum keeps a float32 buffer per tuned element (Adam two); windowed momentum keeps only the
last K pairs but regenerates K directions per step. This prints both costs on one model in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, rss_bytes, time_median  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded", help="'embedded' (SmolLM2-135M) or a local HF model dir")
    ap.add_argument("--windows", default="1,4,8,16", help="window sizes K to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS_DIR / "momentum_tradeoff.json"))
    args = ap.parse_args(argv)

    import torch

    from blackbox_zo import ParamSpace
    from blackbox_zo.lm import load_model
    from blackbox_zo.step.transforms import DenseAdam, DenseMomentum

    model, _ = load_model(None if args.model == "embedded" else args.model)
    space = ParamSpace(model)
    numel = space.numel()
    rows = []
    for k in [int(x) for x in args.windows.split(",")]:
        pairs = [(1000 + i, 1e-9) for i in range(k)]  # one update of windowed momentum = K directions
        t = time_median(lambda: space.apply(pairs), args.repeats)
        rows.append({"method": f"momentum window K={k}", "update_s": t["median_s"], "state_bytes": 16 * k})
    for name, rule in (("momentum dense", DenseMomentum(0.9)), ("adam dense", DenseAdam())):
        before = rss_bytes()
        rule.apply(space, [(7, 1e-9)], 1e-9)  # first call allocates the state
        grown = rss_bytes() - before
        t = time_median(lambda: rule.apply(space, [(7, 1e-9)], 1e-9), args.repeats)
        state = sum(b.numel() * b.element_size() for v in rule.buffers.values() for b in (v if isinstance(v, tuple) else (v,)))
        rows.append({"method": name, "update_s": t["median_s"], "state_bytes": state, "rss_growth_bytes": grown})
    report = {"model": args.model, "tuned_elements": numel, "threads": torch.get_num_threads(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{'method':24} {'update s':>9} {'state MB':>10}")
    for r in rows:
        print(f"{r['method']:24} {r['update_s']:9.3f} {r['state_bytes'] / 2**20:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
