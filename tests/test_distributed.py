"""Ray workers on a real local cluster: bitwise equal to one process, and through kills, hangs, drift and errors.

The objective is the label-word cross-entropy on a tiny random Llama: continuous, so a one-ulp difference
in any weight shows up in the logged values. Worker processes import it from tests/distributed_task.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from blackbox_zo.distributed import DistributedMeZO
from blackbox_zo.distributed.driver import connect
from blackbox_zo.distributed.plan import Task, combine, group_values, plan_step, shard_of
from blackbox_zo.distributed.worker import digest
from blackbox_zo.running.artifacts import rebuild
from blackbox_zo.running.run import run
from blackbox_zo.setup.config import ConfigError, load_config
from blackbox_zo.step.engine import ObjectiveError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module, started as a run starts it: 4 logical CPUs (workers share the 2 cores)."""
    if ray.is_initialized():
        ray.shutdown()  # another module's Ray may be smaller than the 3 workers here need
    connect(None, workers=4, cpus_per_worker=1.0)
    yield
    ray.shutdown()


def config(model_dir, out, workers=None, steps=3, task=None, **sections) -> dict:
    cfg = {
        "model": {"name": str(model_dir), "batch_size": 8},
        "objective": {"factory": "tests.distributed_task:sentiment_nll", "args": task or {}},
        "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 3},
        "train": {"steps": steps, "batch_size": 8, "eval_every": steps, "plot": False},
        "distributed": {"workers": workers, "point_timeout_s": 60.0},
        "space": {},
        "output": str(out),
    }
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value}
    return cfg


def one_process(model_dir, out, **over) -> tuple[str, str, dict]:
    """Trajectory text, exact digest of the replayed weights, and the summary of a run without Ray."""
    summary = run(config(model_dir, out, **over), progress=False)
    _, loaded, _ = rebuild(out, step="last")
    return (out / "trajectory.jsonl").read_text(), digest(loaded.space), summary


def digests(opt: DistributedMeZO) -> set[str]:
    return {s["digest"] for s in opt.states().values()}


# --- plain functions: no Ray ----------------------------------------------------------------------
def test_plan_spreads_contiguous_blocks_and_batch_shards():
    assert plan_step(6, [4, 7, 9], "points") == {4: [Task(0, 0, 1), Task(1, 0, 1)], 7: [Task(2, 0, 1), Task(3, 0, 1)],
                                                 9: [Task(4, 0, 1), Task(5, 0, 1)]}
    assert plan_step(2, [0, 1, 2], "points") == {0: [Task(0, 0, 1)], 1: [Task(1, 0, 1)]}  # a worker may idle
    assert plan_step(2, [0, 1], "batch") == {0: [Task(0, 0, 2), Task(1, 0, 2)], 1: [Task(0, 1, 2), Task(1, 1, 2)]}
    pairs = plan_step(6, [0, 1], "points", pairs=True)  # pairwise: a worker holds both sides of a direction
    assert [[t.point for t in pairs[w]] for w in (0, 1)] == [[0, 1, 2, 3], [4, 5]]
    assert [shard_of(list(range(7)), Task(0, s, 3)) for s in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="distributed.split"):
        plan_step(2, [0], "rows")


def test_combine_per_example_shards_equals_the_whole_batch_bitwise():
    per = [0.1 * i + 1e-9 * i * i for i in range(11)]  # values whose naive sums depend on the order
    whole = combine(1, {Task(0, 0, 1): {"value": sum(per) / 11, "per_example": per, "n": 11}})
    import math

    cut = {Task(0, s, 3): {"value": 0.0, "per_example": shard_of(per, Task(0, s, 3)), "n": 0} for s in range(3)}
    assert combine(1, cut) == [math.fsum(per) / 11]
    assert whole == [sum(per) / 11]
    with pytest.raises(RuntimeError, match="point 0 is missing shard results"):
        combine(1, {Task(0, 0, 2): cut[Task(0, 0, 3)]})


def test_group_values_tells_one_value_per_group_of_points():
    assert group_values([1.0, 2.0, 3.0], [(0,), (1,), (2,)]) == [1.0, 2.0, 3.0]
    assert group_values([0.5, 0.5, -1.0, -1.0], [(0, 1), (2, 3)]) == [0.5, -1.0]  # a pairwise preference per pair
    with pytest.raises(ValueError, match=r"groups \[\[0, 1\]\] do not name points among the 1 scored"):
        group_values([1.0], [(0, 1)])


def test_config_section_is_validated():
    base = {"objective": {"factory": "m:f"}}
    assert load_config(base).distributed.workers is None
    with pytest.raises(ConfigError, match="distributed.split: 'rows' is not one of"):
        load_config({**base, "distributed": {"split": "rows"}})
    with pytest.raises(ConfigError, match="distributed.workers must be > 0"):
        load_config({**base, "distributed": {"workers": 0}})
    with pytest.raises(ConfigError, match="unknown key distributed.worker"):
        load_config({**base, "distributed": {"worker": 2}})


@pytest.mark.parametrize("optim, split, message", [
    ({"optimizer": "conservative"}, "points", "do not support optimizer 'conservative'"),
    ({"estimator": "pairwise"}, "batch", "split 'batch' does not apply to estimator 'pairwise'"),
])
def test_unsupported_settings_fail_before_ray_starts(tmp_path, optim, split, message):
    with pytest.raises(ConfigError, match=message):
        DistributedMeZO(config(tmp_path, tmp_path / "out", 2, optim=optim, distributed={"split": split}))


# --- real Ray workers -----------------------------------------------------------------------------
@pytest.mark.parametrize("workers, section, message", [
    (5, {}, r"5 workers x 1 CPU need 5 CPUs, the Ray cluster has 4"),
    (2, {"gpus_per_worker": 1.0}, r"2 workers x 1 GPU need 2 GPUs, the Ray cluster has 0"),
])
def test_more_than_the_cluster_holds_fails_at_once(cluster, tmp_path, workers, section, message):
    with pytest.raises(ConfigError, match=message):
        DistributedMeZO(config(tmp_path, tmp_path / "out", workers, distributed=section))


def test_a_worker_that_cannot_start_is_named_in_one_line(cluster, tiny_llama_dir, tmp_path):
    cfg = config(tiny_llama_dir, tmp_path / "out", 1, task={"n_train": 0})  # the factory returns no train data
    with pytest.raises(RuntimeError, match=r"^a worker failed to start: .*ConfigError: .* returned an empty 'train' list$"):
        DistributedMeZO(cfg)


# n-SPSA over 3 workers and population over 2 are compared with one process in the fault tests below
def test_data_parallel_spsa_equals_one_process_bitwise(cluster, tiny_llama_dir, tmp_path):
    """Each of 2 workers scores half the batch at every point; per-example values are summed with fsum."""
    text, want, ref = one_process(tiny_llama_dir, tmp_path / "one")
    out = tmp_path / "ray"
    summary = run(config(tiny_llama_dir, out, 2, distributed={"split": "batch"}), progress=False)
    assert (out / "trajectory.jsonl").read_text() == text  # header, seeds, values, gradients: every byte
    assert summary["final_fingerprint"] == ref["final_fingerprint"] and summary["workers"] == 2
    assert summary["val_final"] == ref["val_final"] and summary["worker_rebuilds"] == []
    _, loaded, _ = rebuild(out, step="last")
    assert digest(loaded.space) == want


def test_pairwise_on_workers_equals_one_process_bitwise(cluster, tiny_llama_dir, tmp_path):
    """Each worker generates both sides of its direction and judges them: a preference travels, not text.
    2 directions on 3 workers: the third scores nothing yet passes through every point and applies the update."""
    optim, task = {"estimator": "pairwise", "n": 2, "eps": 0.05}, "tests.distributed_task:sentiment_pairwise"
    text, want, ref = one_process(tiny_llama_dir, tmp_path / "one", optim=optim, objective={"factory": task})
    assert any(v != 0.0 for line in text.splitlines()[1:] for v in json.loads(line)["values"])  # not all ties
    out = tmp_path / "ray"
    summary = run(config(tiny_llama_dir, out, 3, optim=optim, objective={"factory": task}), progress=False)
    assert (out / "trajectory.jsonl").read_text() == text and summary["final_fingerprint"] == ref["final_fingerprint"]
    assert summary["workers"] == 3 and summary["worker_rebuilds"] == []  # final digests all equal (else fingerprint() rebuilds)


def test_a_run_on_workers_stores_its_validation_answers_and_text_numbers(cluster, tiny_llama_dir, tmp_path):
    """A validation on a worker sends its answers back (plain lists): samples.jsonl and the val_* text columns are
    the same as one process writes (no held NLL on workers: pi_0 lives in their processes, not the driver's)."""
    optim = {"estimator": "pairwise", "n": 2, "eps": 0.05}
    objective = {"factory": "tests.distributed_task:sentiment_pairwise_text"}
    one = tmp_path / "one"
    run(config(tiny_llama_dir, one, optim=optim, objective=objective, train={"eval_every": 1}), progress=False)
    out = tmp_path / "ray"
    run(config(tiny_llama_dir, out, 2, optim=optim, objective=objective, train={"eval_every": 1}), progress=False)
    assert (out / "samples.jsonl").read_text() == (one / "samples.jsonl").read_text()
    assert len((out / "samples.jsonl").read_text().splitlines()) == 8 * 4  # before the first step and after each of 3
    text = [{k: v for k, v in json.loads(line).items() if k.startswith("val_")}
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    want = [{k: v for k, v in json.loads(line).items() if k.startswith("val_") and k != "val_nll"}
            for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert text == want and all("val_distinct_2" in row for row in text)


def test_a_batched_population_on_workers_scores_each_share_at_use_time(cluster, tiny_llama_dir, tmp_path):
    """Low-rank directions: each worker applies its share of the members at use time (one batched forward per
    share), the weights are written once per step, and every copy ends bitwise equal to the replayed log."""
    optim, space = {"estimator": "population", "n": 2, "eps": 0.05}, {"noise": "lowrank"}  # 4 members, 2 per worker
    text, _, ref = one_process(tiny_llama_dir, tmp_path / "one", optim=optim, space=space)
    assert json.loads(text.splitlines()[0])["config"]["evaluate"] == "batched"
    out = tmp_path / "ray"
    summary = run(config(tiny_llama_dir, out, 2, optim=optim, space=space), progress=False)
    mine = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert mine[0]["config"]["evaluate"] == "batched"
    # a share's forward holds fewer rows than the whole population's, so values agree to float rounding only
    for a, b in zip(mine[1:], [json.loads(line) for line in text.splitlines()[1:]]):
        assert a["values"] == pytest.approx(b["values"], rel=1e-5) and a["values"] != [a["values"][0]] * 4
    assert summary["worker_rebuilds"] == []  # every worker's final digest agreed
    _, loaded, _ = rebuild(out, step="last")
    assert loaded.space.fingerprint() == summary["final_fingerprint"]


def test_rounds_patience_and_the_trainer_loop_run_on_workers_as_in_one_process(cluster, tiny_llama_dir, tmp_path):
    """The Ray path is the one-process Trainer: rounds the objective draws at the weights (every 2 steps, on each
    worker), validation every step and patience give the same trajectory, metrics rows and summary."""
    task = {"factory": "tests.distributed_task:sentiment_rounds"}
    train = {"steps": 6, "eval_every": 1, "patience": 1}
    text, want, ref = one_process(tiny_llama_dir, tmp_path / "one", objective=task, train=train, optim={"lr": 5e-2})
    out = tmp_path / "ray"
    summary = run(config(tiny_llama_dir, out, 2, objective=task, train=train, optim={"lr": 5e-2}), progress=False)
    assert (out / "trajectory.jsonl").read_text() == text and summary["final_fingerprint"] == ref["final_fingerprint"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    every_other = list(range(1, len(rows) + 1, 2))  # a round before steps 1, 3, ... (rows count updates applied)
    assert [r["step"] for r in rows if "round" in r] == [r["step"] for r in one if "round" in r] == every_other
    assert [r.get("round") for r in rows] == [r.get("round") for r in one] and rows[0]["round"]["kept"] == 6
    # Trap: validation runs on a worker, whose torch uses 1 thread (Ray sets OMP_NUM_THREADS to its num_cpus), and in
    # one process with every core: the same weights (bitwise, above) read 12.85450792 vs 12.85450780 on 2 cores.
    assert [r["val"] for r in rows] == pytest.approx([r["val"] for r in one], rel=1e-6)
    assert all(r["workers"] == 2 for r in rows)
    for key in ("val_start", "val_best", "best_step", "steps", "val_final"):
        assert summary[key] == pytest.approx(ref[key], rel=1e-6), key
    assert summary["steps"] == len(rows) < train["steps"]  # the validation after step 4 did not improve: stopped
    assert summary["workers"] == 2 and summary["worker_rebuilds"] == []


FAULT_STEPS = 5
POPULATION = {"estimator": "population", "n": 2}  # 4 points: 2 per worker on 2 workers
NSPSA_ADAM = {"estimator": "spsa", "n": 3, "optimizer": "adam"}  # 6 points: 2 per worker on 3; Adam state on each


@pytest.fixture(scope="module")
def population_reference(tiny_llama_dir, tmp_path_factory):
    """The one-process run the fault scenarios must reproduce: ES population of 2 pairs, 5 steps."""
    return one_process(tiny_llama_dir, tmp_path_factory.mktemp("ref") / "run", steps=FAULT_STEPS, optim=POPULATION)


@pytest.fixture(scope="module")
def nspsa_reference(tiny_llama_dir, tmp_path_factory):
    """One process, n-SPSA with 3 directions and Adam, 5 steps."""
    return one_process(tiny_llama_dir, tmp_path_factory.mktemp("ref") / "run", steps=FAULT_STEPS, optim=NSPSA_ADAM)


def kill_soon(opt: DistributedMeZO, wid: int, after_s: float) -> threading.Timer:
    """SIGKILL worker `wid`'s process `after_s` seconds from now (while the next step is evaluating)."""
    timer = threading.Timer(after_s, os.kill, (opt.workers[wid], signal.SIGKILL))
    timer.start()
    return timer


def test_killed_and_hung_workers_are_rerun_and_rebuilt_bitwise(cluster, tiny_llama_dir, tmp_path, population_reference):
    text, want, _ = population_reference
    hang = tmp_path / "hang.marker"
    cfg = config(tiny_llama_dir, tmp_path / "out", 2, steps=FAULT_STEPS, optim=POPULATION,
                 task={"delay": 0.3, "hang_marker": str(hang)}, distributed={"point_timeout_s": 4.0})
    with DistributedMeZO(cfg, trajectory=tmp_path / "trajectory.jsonl") as opt:
        opt.step()
        first, second = opt.pool.live()  # points 0-1 and 2-3 of every step
        kill_soon(opt, first, 0.2).join(0)
        opt.step()  # nobody is before point 0: a replacement replays step 0 and re-runs points 0-1
        assert opt.reruns[-1]["step"] == 1 and opt.reruns[-1]["lost_by"] == [first]
        assert opt.reruns[-1]["points"] == [0, 1] and opt.reruns[-1]["on"] not in (first, second)
        early, late = opt.pool.live()  # the survivor now holds points 0-1, the replacement 2-3
        kill_soon(opt, late, 0.2).join(0)
        opt.step()  # the worker with points 0-1 has not walked past point 2: it re-runs points 2-3
        assert opt.reruns[-1] == {"step": 2, "points": [2, 3], "lost_by": [late], "on": early}
        hang.write_text("")
        opt.step()  # the first evaluation of step 3 hangs: past 4 s per point the worker is killed, its points re-run
        assert opt.reruns[-1]["step"] == 3 and not hang.exists()
        opt.step()
        assert [r["why"] for r in opt.pool.rebuilds] == ["died in step 1", "died in step 2", "died in step 3"]
        assert digests(opt) == {want} and opt.size() == 2
    assert (tmp_path / "trajectory.jsonl").read_text() == text


def test_drift_is_repaired_and_a_raising_objective_restores_every_worker(cluster, tiny_llama_dir, tmp_path,
                                                                          nspsa_reference):
    text, want, _ = nspsa_reference
    fail = tmp_path / "fail.marker"
    cfg = config(tiny_llama_dir, tmp_path / "out", 3, steps=FAULT_STEPS, optim=NSPSA_ADAM,
                 task={"fail_marker": str(fail)}, distributed={"check_every": 1})
    with DistributedMeZO(cfg, trajectory=tmp_path / "trajectory.jsonl") as opt:
        opt.step()
        opt.step()
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in opt.workers.values()} == {0}  # not Ray's nice 15
        odd = opt.pool.live()[1]
        ray.get(opt.pool.handles[odd].apply.remote([(12345, 1e-6)]))  # one copy of theta drifts
        assert len(digests(opt)) == 2
        opt.step()  # the check before step 2 finds the odd one out and rebuilds it from base + trajectory
        assert [(r["worker"], r["why"]) for r in opt.pool.rebuilds] == [(odd, "weights differed at step 2")]
        fail.write_text("")
        with pytest.raises(ObjectiveError, match=r"scorer crashed .* on worker \d+ \(pid \d+\), step 3, point [0-5] "
                                                 r".*every worker was rebuilt to the weights before step 3"):
            opt.step()
        assert sorted(r["worker"] for r in opt.pool.rebuilds[1:]) == opt.pool.live()  # all three, in place
        assert opt.step_count == 3 and len(digests(opt)) == 1
        opt.step()
        opt.step()
        assert digests(opt) == {want}
    assert (tmp_path / "trajectory.jsonl").read_text() == text


def test_killed_driver_resumes_from_its_trajectory(cluster, tiny_llama_dir, tmp_path, population_reference):
    text, want, _ = population_reference
    out = tmp_path / "out"
    cfg = config(tiny_llama_dir, out, None, steps=FAULT_STEPS, optim=POPULATION,
                 task={"delay": 0.2}, distributed={"address": ray.get_runtime_context().gcs_address})
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    import subprocess
    import sys

    driver = subprocess.Popen([sys.executable, "-m", "blackbox_zo.running.cli", "run", str(path), "--workers", "2", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "trajectory.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 steps
            break
        time.sleep(0.1)
    driver.kill()  # SIGKILL: no cleanup in the driver; Ray ends its workers
    driver.wait()
    done = len(log.read_text().splitlines()) - 1
    assert 2 <= done < FAULT_STEPS
    summary = run({**cfg, "distributed": {**cfg["distributed"], "workers": 2}}, resume=True, progress=False)
    assert summary["steps"] == FAULT_STEPS and log.read_text() == text
    _, loaded, _ = rebuild(out, step="last")
    assert digest(loaded.space) == want


def test_the_driver_is_a_face_whose_workers_replay_logged_steps(cluster, tiny_llama_dir, tmp_path, population_reference):
    """DistributedMeZO implements the Face protocol: replay(records) brings every worker to the logged weights."""
    from blackbox_zo.faces.protocol import Face
    from blackbox_zo.step.trajectory import TrajectoryError

    text, want, _ = population_reference
    records = [json.loads(line) for line in text.splitlines()[1:]]
    with DistributedMeZO(config(tiny_llama_dir, tmp_path / "out", 2, steps=FAULT_STEPS, optim=POPULATION)) as opt:
        assert isinstance(opt, Face) and not opt.pairwise and opt.maximize == opt.spec.maximize
        opt.replay(records[:2])
        opt.replay(records[2:])
        assert opt.step_count == len(records) and digests(opt) == {want}
        with pytest.raises(TrajectoryError, match="do not continue at step"):
            opt.replay(records[:1])
