"""Nothing a user runs can lose a run, on real tiny-model runs and real subprocesses: exports never delete what
they did not write, one writer per run folder, torn log lines reported and ignored (only --resume cuts them),
failed starts leave nothing in the way, and --resume refuses changed inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blackbox_zo.prefer.store import Pair, VoteStore
from blackbox_zo.running.cli import main
from blackbox_zo.running.run import run
from blackbox_zo.running.run_folder import earlier_seconds
from blackbox_zo.setup.config import ConfigError
from blackbox_zo.step.jsonl import read_jsonl
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError

COMMAND = [str(Path(sys.executable).with_name("blackbox-zo"))]


def config(model_dir, out, steps=3, **over) -> dict:
    cfg = {"model": {"name": str(model_dir), "batch_size": 8},
           "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
           "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 3},
           "train": {"steps": steps, "batch_size": 8, "eval_every": 1, "plot": False},
           "output": str(out)}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def finished(tiny_llama_dir, tmp_path_factory) -> Path:
    """A finished 3-step run (validated after every step), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("reliability") / "done"
    assert run(config(tiny_llama_dir, out), progress=False)["steps"] == 3
    return out


def copy_run(finished: Path, to: Path) -> Path:
    shutil.copytree(finished, to)
    cfg = json.loads((to / "config.json").read_text())
    cfg["output"] = str(to)
    (to / "config.json").write_text(json.dumps(cfg))
    return to


def one_line(capsys, argv, *names) -> str:
    assert main([str(a) for a in argv]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("blackbox-zo: warning")]
    assert len(err) == 1 and err[0].startswith("blackbox-zo: error: "), err
    for name in names:
        assert name in err[0], (name, err[0])
    return err[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- exports -------------------------------------------------------------------------------------------------


def test_export_force_into_a_parent_deletes_nothing(finished, tmp_path, capsys, monkeypatch):
    """Issue case: `cd runs && blackbox-zo export demo --out . --force` wiped every run."""
    runs = tmp_path / "runs"
    demo = copy_run(finished, runs / "demo")
    sibling = copy_run(finished, runs / "sibling")
    (runs / "notes.txt").write_text("mine")
    before = snapshot(runs)
    one_line(capsys, ["export", demo, "--out", runs, "--force"], "not an earlier export")
    monkeypatch.chdir(runs)
    one_line(capsys, ["export", "demo", "--out", ".", "--force"], "not an earlier export")
    one_line(capsys, ["export", "demo", "--out", "demo/model"], "inside the run folder", "trajectory.jsonl")
    one_line(capsys, ["export", "demo", "--out", "sibling", "--force"], "inside the run folder")
    assert snapshot(runs) == before and sibling.is_dir()


def test_prefer_export_never_overwrites_the_vote_database(tmp_path, capsys):
    """Issue case: `prefer export RUN --out RUN/votes.sqlite` replaced every vote with JSONL (rc 0)."""
    run_dir = tmp_path / "prefer"
    store = VoteStore(run_dir / "votes.sqlite")
    store.add_pairs([Pair("0-0-0", 0, 0, 0, "Why?", "plus", "minus", False)], [7])
    store.vote("0-0-0", "left", "alice", 0)
    store.close()
    (run_dir / "trajectory.jsonl").write_text('{"format": "blackbox_zo.trajectory"}\n')
    before = snapshot(run_dir)
    for target in ("votes.sqlite", "trajectory.jsonl", "sub/votes.jsonl"):
        one_line(capsys, ["prefer", "export", run_dir, "--out", run_dir / target], "inside the run folder")
    assert snapshot(run_dir) == before  # read-only: no -wal / -shm files appear either
    out = tmp_path / "dpo.jsonl"
    assert main(["prefer", "export", str(run_dir), "--out", str(out)]) == 0
    assert snapshot(run_dir) == before  # trap: sqlite's mode=ro alone leaves -wal and -shm files in the run
    assert json.loads(out.read_text()) == {"prompt": "Why?", "chosen": "plus", "rejected": "minus"}
    one_line(capsys, ["prefer", "export", run_dir, "--out", out], "exists", "--force")
    assert main(["prefer", "export", str(run_dir), "--out", str(out), "--force"]) == 0
    store = VoteStore(run_dir / "votes.sqlite")
    assert len(store.votes()) == 1
    (tmp_path / "live.jsonl").unlink(missing_ok=True)
    assert main(["prefer", "export", str(run_dir), "--out", str(tmp_path / "live.jsonl")]) == 0  # a server has it open
    assert (tmp_path / "live.jsonl").read_text() == out.read_text()
    store.close()


# --- one writer per folder -----------------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid(finished, tiny_llama_dir, tmp_path):
    """Issue case: two `run --resume` on one folder both ended rc 0 with steps 4,5,4,6,... Two real processes."""
    out = copy_run(finished, tmp_path / "run")
    cfg = tmp_path / "more.yaml"
    cfg.write_text(yaml.safe_dump(config(tiny_llama_dir, out, steps=5)))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom blackbox_zo.setup.lock import RunLock\n"
                               "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(300)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(out)
        second = subprocess.run([*COMMAND, "run", str(cfg), "--resume", "--quiet"], capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"process {holder.pid}" in lines[0] and str(out) in lines[0], lines
        assert snapshot(out) == before  # refused before anything was written or any model loaded
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: the kernel releases the lock with the process
        holder.wait()
    again = subprocess.run([*COMMAND, "run", str(cfg), "--resume", "--quiet"], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert [r["step"] for r in Trajectory(out / "trajectory.jsonl").records] == [0, 1, 2, 3, 4]


def test_two_resumes_at_once_leave_a_log_that_replays(finished, tiny_llama_dir, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    cfg = tmp_path / "more.yaml"
    cfg.write_text(yaml.safe_dump(config(tiny_llama_dir, out, steps=6)))
    procs = [subprocess.Popen([*COMMAND, "run", str(cfg), "--resume", "--quiet"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert 0 in codes and set(codes) <= {0, 2}, errors
    for code, err in zip(codes, errors):
        if code == 2:
            assert "is being written by process" in err
    assert [r["step"] for r in Trajectory(out / "trajectory.jsonl").records] == list(range(6))
    rows = read_jsonl(out / "metrics.jsonl").rows
    assert [r["step"] for r in rows] == list(range(1, 7))  # each step's row once, numbered by updates applied


# --- torn lines ----------------------------------------------------------------------------------------------


def tear(path: Path, cut: int | None, garbage: bytes = b"") -> tuple[int, bytes]:
    """Cut the last line after `cut` bytes (None: keep all but its newline), or append garbage; returns
    (its 1-based line number, the new file bytes)."""
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    if garbage:
        torn = raw + garbage
        line = len(lines) + 1
    else:
        last = lines[-1]
        torn = b"".join(lines[:-1]) + (last[:-1] if cut is None else last[:cut])
        line = len(lines)
    path.write_bytes(torn)
    return line, torn


@pytest.mark.parametrize("cut, garbage", [(1, b""), (40, b""), (None, b""), (0, b"\x00\x00\x00\x00"),
                                          (0, b'{"step": 3, "values": [0.5,')])
def test_a_torn_last_line_is_reported_ignored_and_cut_only_by_resume(finished, tiny_llama_dir, tmp_path, capsys,
                                                                     cut, garbage):
    """Issue cases: read-only commands truncated the file, garbage was dropped silently, and `--step best` silently
    used the steps left while the summary named a later one."""
    out = copy_run(finished, tmp_path / "run")
    log = out / "trajectory.jsonl"
    line, torn = tear(log, cut, garbage)
    kept = 3 if garbage else 2
    assert len(Trajectory(log).records) == kept
    assert f"{log}:{line}: the last line is torn" in capsys.readouterr().err
    before = snapshot(out)
    assert main(["replay", str(out), "--step", "last"]) == 0  # read-only: the file keeps every byte
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps_replayed"] == kept
    assert main(["eval", str(out), "--step", "last"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == kept
    assert snapshot(out) == before  # no command that only reads wrote anything in the run folder
    summary = json.loads((out / "summary.json").read_text())
    summary["best_step"] = 3
    (out / "summary.json").write_text(json.dumps(summary))
    if not garbage:
        one_line(capsys, ["export", out, "--out", tmp_path / "x"], "best step", "--step last")
        one_line(capsys, ["eval", out], "--step last")
    assert log.read_bytes() == torn and not (tmp_path / "x").exists()
    resumed = run(config(tiny_llama_dir, out, steps=4), resume=True, progress=False)  # a writer: cuts, says so
    assert "removed before appending" in capsys.readouterr().err
    assert [r["step"] for r in Trajectory(log).records] == [0, 1, 2, 3]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl").rows] == [1, 2, 3, 4]
    straight = run(config(tiny_llama_dir, tmp_path / "straight", steps=4), progress=False)
    assert resumed["final_fingerprint"] == straight["final_fingerprint"]  # still bitwise the uninterrupted run


def test_a_bad_line_before_the_last_names_its_line(finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    log = out / "trajectory.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = "{oops\n"
    log.write_text("".join(lines))
    with pytest.raises(TrajectoryError, match=f"{log}:3: not a JSON line"):
        Trajectory(log)


def test_a_torn_metrics_line_does_not_block_resume(finished, tiny_llama_dir, tmp_path, capsys):
    """Issue case: a torn metrics.jsonl stopped --resume with exit 1 and a JSONDecodeError naming no file."""
    out = copy_run(finished, tmp_path / "run")
    metrics = out / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-7])
    summary = run(config(tiny_llama_dir, out, steps=4), resume=True, progress=False)
    assert f"{metrics}:3: removed the torn last line" in capsys.readouterr().err
    rows = read_jsonl(metrics).rows  # the torn row of step 3 is lost; the trajectory still holds that step itself
    assert [r["step"] for r in rows] == [1, 2, 4] and summary["steps"] == 4


# --- starts and resumes --------------------------------------------------------------------------------------


def failing_task(**args):
    """A factory whose objective fails on its first evaluation (before step 1)."""
    from objectives.recipes import builtin_sentiment

    task = builtin_sentiment(**args)

    class Broken:
        name, maximize = "broken", True

        def evaluate(self, lm, batch, seed=None):
            raise RuntimeError("scorer crashed")

    task["objective"] = Broken()
    return task


def test_a_start_that_fails_before_step_1_leaves_nothing_in_the_way(tiny_llama_dir, tmp_path):
    """Issue case: a failed start left a header-only trajectory and empty metrics that refused the corrected rerun."""
    out = tmp_path / "run"
    bad = config(tiny_llama_dir, out, objective={"factory": "tests.test_reliability_runs:failing_task", "args": {}})
    with pytest.raises(RuntimeError, match="scorer crashed"):
        run(bad, progress=False)
    assert not out.exists()
    out.mkdir()  # a folder that existed before: kept, emptied of what the start wrote
    (out / "README").write_text("mine")
    with pytest.raises(RuntimeError):
        run(bad, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["README", "run.lock"]
    # what a kill -9 during the first validation leaves: a header-only log, empty metrics
    (out / "trajectory.jsonl").write_text('{"format":"blackbox_zo.trajectory","version":2,"config":{},'
                                          '"base_fingerprint":"x"}\n')
    (out / "metrics.jsonl").write_text("")
    assert run(config(tiny_llama_dir, out, steps=1, optim={"lr": 2e-3, "eps": 1e-2, "seed": 3}),
               progress=False)["steps"] == 1


def test_metrics_without_a_trajectory_are_refused(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0, "objective": 0.5, "time": 1.0}\n')
    for resume in (False, True):
        with pytest.raises(ConfigError, match="no step"):
            run(config(tiny_llama_dir, out), resume=resume, progress=False)
    assert (out / "metrics.jsonl").read_text() == '{"step": 0, "objective": 0.5, "time": 1.0}\n'


def file_task(path: str):
    """The built-in objective over rows read from a JSON file (so a test can change the data behind a run)."""
    from objectives.recipes import builtin_sentiment

    task = builtin_sentiment()
    rows = json.loads(Path(path).read_text())
    return {**task, "train": rows, "val": rows}


def test_resume_refuses_a_changed_objective_space_or_data(finished, tiny_llama_dir, tmp_path):
    """Issue case: --resume quietly accepted a changed objective.args."""
    out = copy_run(finished, tmp_path / "run")
    for over, key in ((dict(objective={"factory": "objectives.recipes:builtin_sentiment",
                                       "args": {"metric": "accuracy", "seed": 1}}), "objective.args.seed"),
                      (dict(space={"kind": "full", "include": ["layers.1"]}), "space.include"),
                      (dict(train={"steps": 4, "batch_size": 4, "eval_every": 1, "plot": False}), "train.batch_size")):
        with pytest.raises(ConfigError, match=key):
            run(config(tiny_llama_dir, out, steps=4, **over), resume=True, progress=False)
    assert len(Trajectory(out / "trajectory.jsonl").records) == 3
    from objectives.recipes import builtin_sentiment

    data = tmp_path / "rows.json"
    data.write_text(json.dumps(builtin_sentiment()["train"][:16]))
    task = {"factory": "tests.test_reliability_runs:file_task", "args": {"path": str(data)}}
    run(config(tiny_llama_dir, tmp_path / "filed", steps=1, objective=task), progress=False)
    data.write_text(json.dumps(builtin_sentiment()["train"][16:32]))  # same file name, other rows
    with pytest.raises(ConfigError, match="training data changed"):
        run(config(tiny_llama_dir, tmp_path / "filed", steps=2, objective=task), resume=True, progress=False)


def test_summary_seconds_count_every_session(finished, tiny_llama_dir, tmp_path):
    """Issue case: --resume of a finished run wrote seconds 0.0; seconds counted only the time after a resume."""
    assert earlier_seconds([{"time": 1.0}, {"time": 2.0}, {"time": 0.5}, {"time": 1.5}]) == 3.5
    out = copy_run(finished, tmp_path / "run")
    first = json.loads((out / "summary.json").read_text())["seconds"]
    rows = read_jsonl(out / "metrics.jsonl").rows
    again = run(config(tiny_llama_dir, out), resume=True, progress=False)  # finished: no new step
    assert again["seconds"] == round(earlier_seconds(rows), 1) and again["seconds"] > 0
    assert abs(again["seconds"] - first) <= 0.1 + first * 0.5
    longer = run(config(tiny_llama_dir, out, steps=4), resume=True, progress=False)
    assert longer["seconds"] >= again["seconds"]


def test_read_only_commands_work_on_a_read_only_run(finished, tmp_path, capsys):
    """Issue case: replay/eval/export truncated a torn trajectory when opening it, and so failed on read-only media."""
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    out = copy_run(finished, tmp_path / "run")
    tear(out / "trajectory.jsonl", 5)
    for p in [out, *out.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert main(["replay", str(out), "--step", "last"]) == 0
    finally:
        for p in [out, *out.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_a_second_prefer_server_on_one_folder_is_refused(tiny_llama_dir, tmp_path):
    out = tmp_path / "prefer"
    cfg = tmp_path / "prefer.yaml"
    cfg.write_text(yaml.safe_dump({"prompts": ["Why?"], "model": {"name": str(tiny_llama_dir)}, "output": str(out)}))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom blackbox_zo.setup.lock import RunLock\n"
                               "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(300)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run([*COMMAND, "prefer", str(cfg), "--port", "1"], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and f"process {holder.pid}" in second.stderr, second.stderr
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # no votes.sqlite, no trajectory
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_resume_inputs_are_stable_across_starts_and_versions(tmp_path):
    """A data row holding an object without a content repr must not refuse every resume (its repr holds a memory
    address); a space key that a later version adds is not a change of the recorded run."""
    from blackbox_zo.running.run_folder import check_resume, inputs_of, record_inputs
    from blackbox_zo.setup.config import load_config

    class Opaque:
        pass

    cfg = load_config({"objective": {"factory": "objectives.recipes:builtin_sentiment"}, "output": str(tmp_path)})
    task = lambda: {"train": [{"sentence": "a", "extra": Opaque()}], "val": None}  # noqa: E731
    first, second = inputs_of(cfg, task()), inputs_of(cfg, task())
    assert first["data_sha256"] == second["data_sha256"]
    record_inputs(tmp_path, cfg, first)
    check_resume(tmp_path, second)
    recorded = json.loads((tmp_path / "inputs.json").read_text())
    del recorded["space"]["subspace_seed"]  # as written by a version without the key
    (tmp_path / "inputs.json").write_text(json.dumps(recorded))
    check_resume(tmp_path, second)
    changed = inputs_of(cfg, {"train": [{"sentence": "b", "extra": Opaque()}], "val": None})
    with pytest.raises(ConfigError, match="training data changed"):
        check_resume(tmp_path, changed)


def test_a_metrics_log_from_before_0_3_is_renumbered_when_a_resume_appends(finished, tiny_llama_dir, tmp_path):
    """metrics.jsonl counted steps from 0 before 0.3 (eval/export/plot from 1); a resume renumbers the old rows
    before appending, so one file never mixes the two numberings."""
    out = copy_run(finished, tmp_path / "run")
    metrics = out / "metrics.jsonl"
    rows = read_jsonl(metrics).rows
    assert [r["step"] for r in rows] == [1, 2, 3]
    metrics.write_text("".join(json.dumps({**r, "step": r["step"] - 1}) + "\n" for r in rows))  # the old numbering
    run(config(tiny_llama_dir, out, steps=4), resume=True, progress=False)
    assert [r["step"] for r in read_jsonl(metrics).rows] == [1, 2, 3, 4]


def test_a_folder_holding_files_no_run_wrote_is_refused_and_kept(tiny_llama_dir, tmp_path):
    """A plain run into a folder with a user's own config.json: refused in one line, the file kept byte for byte
    (clearing "what a failed start wrote" must never remove what no start wrote)."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    with pytest.raises(ConfigError, match="config.json but no run log"):
        run(config(tiny_llama_dir, out, steps=1), progress=False)
    assert (out / "config.json").read_text() == '{"mine": true}'
