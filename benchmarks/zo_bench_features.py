"""ZO-Bench features against the library default at an equal number of forward passes, on a tiny MLP (issue 23).

Why: `conservative`, `one_sided`, `mask_density`, `blockwise` and dense `momentum` / `adam` are switches a
user can turn on; this says, per switch, whether it changes the result of a small task at all. Task: a
3-layer MLP (10 -> 32 -> 32 -> 2) learns the labels of a random teacher MLP from 256 examples; the objective
is the full-batch training cross-entropy; every row gets the same budget of objective evaluations, each row
its best learning rate of a small grid (by mean final training loss), and the held-out accuracy on 2000
examples is reported as the mean and standard deviation over seeds.

    OMP_NUM_THREADS=1 python benchmarks/zo_bench_features.py            # ~3 min on one core
    OMP_NUM_THREADS=1 python benchmarks/zo_bench_features.py --seeds 2 --budget 200 --out smoke.json  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import torch  # noqa: E402

import blackbox_zo as bz  # noqa: E402

ROWS = {  # name -> MeZO keywords on top of the shared ones (eps, seed, lr)
    "default": {},  # spsa, sgd, normalized rule, n=1
    "one_sided": {"estimator": "one_sided"},
    "conservative": {"optimizer": "conservative"},
    "mask_density=0.2": {"mask_density": 0.2},
    "blockwise": {"blockwise": True},
    "momentum (dense)": {"optimizer": "momentum"},
    "adam (dense)": {"optimizer": "adam"},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=2000, help="objective evaluations per run (all rows alike)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1: data, initial weights and directions")
    p.add_argument("--lrs", default="0.001,0.003,0.01,0.03,0.1", help="learning-rate grid; each row keeps its best")
    p.add_argument("--eps", type=float, default=1e-2)
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    p.add_argument("--out", default=str(common.RESULTS_DIR / "zo_bench_features.json"))
    return p.parse_args(argv)


class MLP(torch.nn.Module):
    """Layers under `layers.N.` so that blockwise mode sees one block per layer."""

    def __init__(self, sizes=(10, 32, 32, 2)):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.tanh(layer(x))
        return x


def task(seed: int):
    """Train/test data labelled by a random teacher MLP, and a freshly initialised student."""
    torch.manual_seed(1000 + seed)
    teacher = MLP()
    x_train, x_test = torch.randn(256, 10), torch.randn(2000, 10)
    with torch.no_grad():
        y_train, y_test = teacher(x_train).argmax(-1), teacher(x_test).argmax(-1)
    torch.manual_seed(seed)
    return MLP(), (x_train, y_train), (x_test, y_test)


def one_run(row: dict, lr: float, eps: float, seed: int, budget: int) -> dict:
    model, (x, y), (xt, yt) = task(seed)
    calls = [0]

    def loss() -> float:
        calls[0] += 1
        return float(torch.nn.functional.cross_entropy(model(x), y))

    opt = bz.MeZO(model, lr=lr, eps=eps, seed=seed, **row)
    with torch.no_grad():
        start = loss()
        calls[0] = 0
        while calls[0] < budget:
            opt.step(loss)
        final = float(torch.nn.functional.cross_entropy(model(x), y))
        acc = float((model(xt).argmax(-1) == yt).float().mean())
    return {"train_loss_start": start, "train_loss": final, "test_acc": acc, "evals": calls[0], "steps": opt.step_count}


def commit() -> str:
    """HEAD's short hash, marked when the working tree had uncommitted changes (what actually ran)."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=common.REPO_ROOT,
                           capture_output=True, text=True).stdout.strip()
    return f"{common.git_commit()}{' + uncommitted changes' if dirty else ''}"


def summarize(runs: list[dict]) -> dict:
    def ms(key):
        xs = [r[key] for r in runs]
        return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}

    return {"train_loss": ms("train_loss"), "test_acc": ms("test_acc"), "steps": ms("steps"), "evals": ms("evals")}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    lrs = [float(v) for v in args.lrs.split(",")]
    names = [n.strip() for n in args.rows.split(",")]
    t0 = time.perf_counter()
    rows = {}
    for name in names:
        grid = {}
        for lr in lrs:
            runs = [one_run(ROWS[name], lr, args.eps, s, args.budget) for s in range(args.seeds)]
            grid[str(lr)] = {"summary": summarize(runs), "runs": runs}
        best = min(grid, key=lambda k: grid[k]["summary"]["train_loss"]["mean"])
        rows[name] = {"kwargs": ROWS[name], "best_lr": float(best), **grid[best]["summary"], "grid": grid}
        s = rows[name]
        print(f"{name:32s} lr {best:>6s}  train CE {s['train_loss']['mean']:.4f} +- {s['train_loss']['std']:.4f}  "
              f"test acc {s['test_acc']['mean']:.4f} +- {s['test_acc']['std']:.4f}  steps {s['steps']['mean']:.0f}",
              flush=True)
    machine = common.machine_info()
    model_name = subprocess.run(["bash", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout.strip()
    payload = {
        "benchmark": "zo_bench_features",
        "command": "OMP_NUM_THREADS=1 python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "commit": commit(),
        "date": machine["date"],
        "machine": {**machine, "lscpu_model_name": model_name},
        "task": "3-layer MLP 10-32-32-2 (1,474 weights), teacher-MLP labels, 256 train / 2000 test examples, "
                "objective: full-batch train cross-entropy",
        "budget_evals": args.budget, "seeds": args.seeds, "eps": args.eps, "lr_grid": lrs,
        "wall_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    path = common.write_results("zo_bench_features", payload, args.out)
    print(f"wrote {path} in {payload['wall_s']} s")
    return payload


if __name__ == "__main__":
    main()
