"""Scale-out on Ray: steps/s with 1 and 2 workers, bytes exchanged per step, and worker bring-up time.

1. Throughput: the same run config (default: the embedded SmolLM2-135M, all 134.5 M weights, the built-in
   sentiment task, ES population of 4 pairs = 8 points per step, batch 16) run in one process and on
   1 and 2 Ray workers; steps/s over the timed steps (validation excluded), and whether every run ends
   with the same final fingerprint.
2. Bytes per step: the pickled size of every message a step sends (step number and task indices out,
   scalars back, the values out to every worker, the step record back), measured on that run; against,
   on paper, a full-weight broadcast after each update (ES at scale) and a ring all-reduce of the
   gradient (DDP), for 135M, 7B and 70B parameters and the same number of workers.
3. Bring-up: a fresh worker process (imports, model load) plus the replay of a trajectory of L steps
   (seeds and values only), for several L.
4. Latency (`--parts latency`): seconds per step when every evaluation also waits `--delay` seconds, as for
   an external judge or API, batch 1: here workers overlap waiting, not computing.

    python benchmarks/distributed.py                    # ~15 min on a loaded 2-core CPU
    python benchmarks/distributed.py --model PATH --steps 2 --lengths 0 4
    python benchmarks/distributed.py --parts latency --out benchmarks/results/distributed_latency.json
    python benchmarks/distributed.py --parts latency --include '^model\\.norm\\.' --out benchmarks/results/distributed_latency_norm.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

SIZES = {"135M": 134_515_008, "7B": 7_000_000_000, "70B": 70_000_000_000}


def run_config(args, out: Path, workers: int | None) -> dict:
    return {
        "model": {"name": args.model, "batch_size": args.batch},
        "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
        "optim": {"estimator": "population", "n": args.n, "eps": 1e-3, "seed": 0},
        "train": {"steps": args.steps, "batch_size": args.batch, "eval_every": args.steps, "plot": False},
        "space": {"include": args.include},
        "distributed": {"workers": workers, "check_every": 1000},
        "output": str(out),
    }


def throughput(args, tmp: Path) -> dict:
    """Steps/s of one config in one process and on each worker count; final fingerprints compared."""
    from blackbox_zo.running.run import run

    rows = {}
    for workers in [None, *args.workers]:
        out = tmp / f"w{workers}"
        summary = run(run_config(args, out, workers), progress=False)
        times = [json.loads(line)["time"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        rows["one process" if workers is None else f"{workers} workers"] = {
            "steps": len(times), "step_times_s": times, "steps_per_s": len(times) / times[-1],
            "final_fingerprint": summary["final_fingerprint"]}
        print(rows, flush=True)
    return rows


def message_bytes(record: dict, batch: int, workers: int) -> dict:
    """Pickled sizes of one step's messages with `workers` workers, for a logged step `record`.

    ours = sum_w |evaluate(step, tasks_w)| + points * |score row| + workers * (|tell(step, values)| + |record|)
    """
    from blackbox_zo.distributed.plan import plan_step

    points = len(record["values"])
    plan = plan_step(points, list(range(workers)), "points")
    sent = sum(len(pickle.dumps((0, [tuple(t) for t in tasks]))) for tasks in plan.values())
    rows = [{"task": (p, 0, 1), "value": v, "n": batch, "per_example": [1.0] * batch} for p, v in enumerate(record["values"])]
    back = sum(len(pickle.dumps([row])) for row in rows)
    tell = workers * len(pickle.dumps((0, record["values"])))
    records_back = workers * len(pickle.dumps(record))
    return {"workers": workers, "points": points, "evaluate_out": sent, "scores_back": back, "values_out": tell,
            "records_back": records_back, "total": sent + back + tell + records_back,
            "note": "pickle sizes of the payloads; Ray adds a fixed per-call header (task spec) not counted here"}


def on_paper(ours: dict) -> dict:
    """Per-step bytes on the wire: full-weight broadcast (bf16) and DDP ring all-reduce (bf16 and fp32 grads)."""
    table, workers, ours_total = {}, ours["workers"], ours["total"]
    for name, p in SIZES.items():
        broadcast = (workers - 1) * 2 * p  # every other worker receives all P weights in bf16 (2 bytes each)
        def ring(b: int) -> float:  # ring all-reduce: each of N workers sends (and receives) 2 (N-1)/N * P * b bytes
            return workers * 2 * (workers - 1) / workers * p * b

        table[name] = {"params": p, "ours": ours_total, "weight_broadcast_bf16": broadcast,
                       "ddp_allreduce_bf16": ring(2), "ddp_allreduce_fp32": ring(4),
                       "broadcast_over_ours": broadcast / ours_total}
    return table


def bring_up(args) -> list[dict]:
    """Seconds to start a worker (process, imports, model) and to replay a trajectory of L steps on it."""
    import ray

    from blackbox_zo.distributed.faults import Pool
    from blackbox_zo.faces.ask_tell import AskTell
    from blackbox_zo.setup.config import load_config

    cfg = run_config(args, Path(tempfile.mkdtemp()), 1)
    cfg["optim"] = {"estimator": "spsa", "eps": 1e-3, "seed": 0}  # 2 points per step, as MeZO
    spec = load_config(cfg).optim
    log = AskTell(None, spec=spec)  # log-only: the records a run would have written, values made up
    records = []
    for t in range(max(args.lengths)):
        log.ask()
        records.append(log.record(log.tell_values([0.5 + 0.01 * (t % 7), 0.5 - 0.01 * (t % 5)])))
    rows = []
    for length in args.lengths:
        pool = Pool(load_config(cfg).to_dict(), 1, 1.0, 0.0, 3600)
        t0 = time.perf_counter()
        (wid,) = pool.start()
        started = time.perf_counter() - t0
        replay = ray.get(pool.call(wid, "replay", records[:length]))
        rows.append({"steps": length, "start_s": started, "replay_s": replay["seconds"],
                     "replay_s_per_step": replay["seconds"] / length if length else None})
        pool.close()
        print(rows[-1], flush=True)
    return rows


def latency(args) -> dict:
    """Seconds per step when each evaluation waits `--delay` s (an external judge or API): 1 vs 2 workers."""
    from blackbox_zo.distributed import DistributedMeZO

    rows = {}
    for workers in args.workers:
        cfg = run_config(args, Path(tempfile.mkdtemp()), workers)
        cfg["objective"] = {"factory": "tests.distributed_task:sentiment_nll", "args": {"delay": args.delay}}
        cfg["train"]["batch_size"] = 1  # the wait dominates, not the forward pass
        with DistributedMeZO(cfg) as opt:
            opt.step()  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            rows[f"{workers} workers"] = {"s_per_step": (time.perf_counter() - t0) / args.steps,
                                          "final_fingerprint": opt.fingerprint()}
        print(rows, flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="model.name: 'embedded' or a local HF directory")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--n", type=int, default=4, help="population pairs (2n points per step)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lengths", type=int, nargs="+", default=[0, 8, 32], help="trajectory lengths to replay")
    p.add_argument("--parts", nargs="+", default=["throughput", "bring_up"], choices=["throughput", "bring_up", "latency"])
    p.add_argument("--include", nargs="*", default=[], help="space.include regexes (default: all weights)")
    p.add_argument("--delay", type=float, default=1.0, help="latency part: seconds each evaluation waits")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/distributed.json)")
    args = p.parse_args()
    import ray

    from blackbox_zo.distributed.driver import connect

    connect(None, workers=max(args.workers), cpus_per_worker=1.0)  # as a run starts its local Ray
    tmp = Path(tempfile.mkdtemp(prefix="bz_dist_"))
    try:
        result = {"machine": common.machine_info(), "commit": common.git_commit(), "args": vars(args)}
        if "throughput" in args.parts:
            result["throughput"] = throughput(args, tmp)
            record = json.loads((tmp / f"w{args.workers[-1]}" / "trajectory.jsonl").read_text().splitlines()[1])
            result["bytes_per_step"] = {n: message_bytes(record, args.batch, n) for n in (2, 8)}
            result["on_paper"] = {n: on_paper(result["bytes_per_step"][n]) for n in (2, 8)}
        if "bring_up" in args.parts:
            result["bring_up"] = bring_up(args)
        if "latency" in args.parts:
            result["latency"] = latency(args)
        print(json.dumps(result, indent=2))
        print(common.write_results("distributed", result, args.out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
