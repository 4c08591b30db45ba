"""Issue 41's fault injection, repeated: kill -9 mid-export, a run appearing in --out, two exports at once, a resume
whose best step must match the uninterrupted run's, and NaN / overflow in configs and steps.

Real parts only: the CLI in a subprocess killed with SIGKILL, a tiny random Llama loaded back with transformers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from blackbox_zo.prefer.config import load_prefer_config
from blackbox_zo.running.artifacts import rebuild, save_checkpoint
from blackbox_zo.running.cli import main
from blackbox_zo.running.export_folder import write_beside
from blackbox_zo.running.run import run
from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.guard import EXPORT_MARKER, check_export_dir
from blackbox_zo.setup.lock import ExportLock, RunLock
from tests.test_reliability_runs import config, copy_run, one_line

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "blackbox_zo.running.cli"]


@pytest.fixture(scope="module")
def finished(tiny_llama_dir, tmp_path_factory) -> Path:
    """A finished 3-step run of the tiny Llama."""
    out = tmp_path_factory.mktemp("fault") / "done"
    assert run(config(tiny_llama_dir, out), progress=False)["steps"] == 3
    return out


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def weights(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


def loads(folder: Path) -> bool:
    try:
        AutoModelForCausalLM.from_pretrained(folder)
    except Exception:
        return False
    return True


# --- exports -------------------------------------------------------------------------------------------------


def test_export_killed_at_random_moments_never_leaves_a_partial_export_that_loads(finished, tmp_path):
    """Issue case 3: a kill after model.safetensors appeared left a folder that loaded without its tokenizer; a
    killed --force had deleted the earlier export; a retry was refused both ways."""
    old, new = tmp_path / "ref_old", tmp_path / "ref_new"
    assert main(["export", str(finished), "--step", "1", "--out", str(old)]) == 0
    assert main(["export", str(finished), "--step", "last", "--out", str(new)]) == 0
    assert (new / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not safetensors' 0600
    rng = random.Random(41)
    for trial in range(6):
        parent = tmp_path / f"trial{trial}"
        out = parent / "exp"
        force = trial % 2 == 1
        if force:
            shutil.copytree(old, out)
        proc = subprocess.Popen([*CLI, "export", str(finished), "--step", "last", "--out", str(out),
                                 *(["--force"] if force else [])], env=env(), stderr=subprocess.DEVNULL)
        if trial == 0:  # anywhere in the first seconds: loading, rebuilding
            time.sleep(rng.uniform(0.5, 3.0))
        else:  # in the writing: from the temp folder's first file on
            deadline = time.time() + 120
            while not list(parent.glob(".exp.partial-*")) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for folder in [p for p in parent.iterdir() if p.is_dir()]:  # what the kill left, visible or not
            if loads(folder):  # loads => complete: tokenizer, and the weights of a whole export
                assert (folder / "tokenizer.json").is_file(), folder
                assert weights(folder) in (weights(old), weights(new)), folder
        if out.exists():  # the target: absent, the earlier export or the new one, each with its marker
            assert (out / EXPORT_MARKER).is_file() and weights(out) in (weights(old), weights(new))
        elif force:
            assert list(parent.glob(".exp.old-*")), "the earlier export must survive a killed --force"
        retry = subprocess.run([*CLI, "export", str(finished), "--step", "last", "--out", str(out), "--force"],
                               env=env(), capture_output=True, text=True)
        assert retry.returncode == 0, retry.stderr
        assert weights(out) == weights(new) and sorted(p.name for p in parent.iterdir()) == ["exp"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_what_appears_in_out_during_an_export_is_refused_not_deleted(finished, tmp_path, capsys):
    """Issue case 1: export removed a live run's trajectory, inputs and run.lock (and files put into an empty
    --out meanwhile): the guard now runs again right before the new folder is renamed into place."""
    cfg, loaded, _ = rebuild(finished, "last")
    out = tmp_path / "victim"
    out.mkdir()

    def meanwhile(temp: Path) -> None:  # the export writes; a user drops a file into --out
        save_checkpoint(cfg, loaded, temp / "model")
        (out / "notes.txt").write_text("mine")

    with pytest.raises(ConfigError, match="not empty"):
        write_beside(out, meanwhile, lambda: check_export_dir(out))
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]
    (out / "notes.txt").unlink()

    def run_starts(temp: Path) -> None:  # a run takes --out as its folder while the export writes
        save_checkpoint(cfg, loaded, temp / "model")
        lock.acquire()

    lock = RunLock(out)
    with pytest.raises(ConfigError, match="inside the run folder"):
        write_beside(out, run_starts, lambda: check_export_dir(out, force=True))
    lock.release()
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"] and not list(tmp_path.glob(".victim*"))


def test_a_live_run_in_out_is_refused(finished, tiny_llama_dir, tmp_path, capsys):
    """Issue case 1 from the command line: `run --output exp/victim &` then `export ... --out exp/victim`."""
    victim = tmp_path / "exp" / "victim"
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(config(tiny_llama_dir, victim, steps=200)))
    proc = subprocess.Popen([*CLI, "run", str(path), "--quiet"], env=env(), stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (victim / "trajectory.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        for force in ([], ["--force"]):
            one_line(capsys, ["export", finished, "--step", "last", "--out", victim, *force], "run folder")
        assert (victim / "trajectory.jsonl").exists() and (victim / "run.lock").exists() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_two_exports_into_one_out_are_serialised(finished, tmp_path, capsys):
    """Issue case 3: two exports at once both passed the check; one died with a bare SafetensorError."""
    out = tmp_path / "exp"
    with ExportLock(out):
        line = one_line(capsys, ["export", finished, "--out", out], "being written by another export",
                        f"process {os.getpid()}")
    assert "exp" in line and not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert main(["export", str(finished), "--out", str(out)]) == 0 and (out / EXPORT_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # the lock file beside it is gone too


def test_an_earlier_export_a_killed_force_moved_aside_is_put_back(finished, tmp_path, capsys):
    """Between the two renames of --force the earlier export sits at .NAME.old-PID: the next export restores it."""
    out = tmp_path / "exp"
    assert main(["export", str(finished), "--step", "1", "--out", str(out)]) == 0
    before = weights(out)
    os.replace(out, tmp_path / ".exp.old-999999")
    capsys.readouterr()
    assert main(["export", str(finished), "--out", str(out)]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 2 and "put back" in said[0] and "not empty" in said[1], said
    assert weights(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_export_refuses_a_model_with_a_nan_weight(finished, tmp_path):
    """Issue case 4: `export --step last` wrote the NaN model of an adam_eps: .nan run."""
    cfg, loaded, _ = rebuild(finished, "last")
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ConfigError, match="non-finite weights"):
        save_checkpoint(cfg, loaded, tmp_path / "exp")
    assert list(tmp_path.iterdir()) == []


# --- the best step across a resume ---------------------------------------------------------------------------


def test_a_resume_ends_on_the_uninterrupted_runs_best_step_and_export(tiny_llama_dir, tmp_path):
    """Issue case 2: the validation at the resume point counted for best but was never logged; best step 9 of a
    resumed run, 0 uninterrupted. The cut is placed where that unlogged validation beats every logged one."""
    def cfg(out, every):
        c = config(tiny_llama_dir, out, steps=10, optim={"lr": 0.05, "eps": 0.1, "seed": 3})
        c["train"]["eval_every"] = every
        return c

    every_step = run(cfg(tmp_path / "all", 1), progress=False)  # the same steps, validated after each
    vals = {r["step"]: r["val"] for r in map(json.loads, (tmp_path / "all" / "metrics.jsonl").read_text().splitlines())}
    full = tmp_path / "full"
    summary = run(cfg(full, 5), progress=False)
    unlogged = [s for s in range(1, 10) if s % 5 and vals[s] > summary["val_best"]]
    assert unlogged, f"no step beats the logged best {summary['val_best']} ({vals}): the test would not discriminate"
    keep = unlogged[0]
    cut = copy_run(full, tmp_path / "cut")
    for name, lines in (("trajectory.jsonl", keep + 1), ("metrics.jsonl", keep)):
        (cut / name).write_text("".join((cut / name).read_text().splitlines(True)[:lines]))
    (cut / "summary.json").unlink()
    resumed = run(cfg(cut, 5), resume=True, progress=False)
    assert (resumed["best_step"], resumed["val_best"]) == (summary["best_step"], summary["val_best"])
    assert (cut / "trajectory.jsonl").read_bytes() == (full / "trajectory.jsonl").read_bytes()
    for folder in (full, cut):
        assert main(["export", str(folder), "--out", str(tmp_path / f"exp_{folder.name}")]) == 0
    assert weights(tmp_path / "exp_full") == weights(tmp_path / "exp_cut")
    assert every_step["steps"] == 10


# --- NaN, inf and overflow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, key", [
    ("optim.adam_eps=.nan", "optim.adam_eps"), ("optim.schedule.final_lr=.nan", "optim.schedule.final_lr"),
    ("optim.lr=1e308", "optim.lr"), ("optim.eps=-.inf", "optim.eps"), ("optim.betas=[0.9, .nan]", "optim.betas[1]"),
    ("distributed.point_timeout_s=.nan", "distributed.point_timeout_s"), ("objective.args.x=.nan", "objective.args.x"),
])
def test_non_finite_and_overflowing_settings_are_refused_naming_the_key(tiny_llama_dir, tmp_path, capsys, setting, key):
    """Issue case 4: adam_eps .nan logged a step of NaN weights; lr 1e308 ended in a RuntimeError naming no key."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(config(tiny_llama_dir, tmp_path / "out")))
    one_line(capsys, ["run", path, "--set", setting], key)
    assert not (tmp_path / "out").exists()


def test_prefer_refuses_a_nan_lease(tmp_path):
    """Issue case 4: `lease_seconds: .nan` made every /api/next a 500."""
    with pytest.raises(ConfigError, match="lease_seconds"):
        load_prefer_config({"prompts": ["Why?"], "lease_seconds": float("nan")})


def test_a_step_whose_update_overflows_stops_naming_the_settings():
    """A non-finite update (finite values, settings in range) stops the run before it is applied or logged."""
    import blackbox_zo as bz
    from blackbox_zo.step.engine import NonFiniteStep

    model = torch.nn.Linear(4, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = bz.MeZO(bz.ParamSpace(model), lr=1e6, eps=1e-3, rule="raw", seed=0)
    values = iter([1e300, -1e300])
    with pytest.raises(NonFiniteStep, match="optim.lr"):
        opt.step(lambda: next(values))
    assert opt.step_count == 0  # restored as after any step's probes (to float rounding), and not moved
    assert all(torch.allclose(p, before[n], atol=1e-6) for n, p in model.named_parameters())


# --- the smaller items ---------------------------------------------------------------------------------------


def test_annotator_names_with_a_trailing_newline_are_refused():
    """Issue case 5: the name check accepted "evil\\n" (`$` matches before a final newline)."""
    from blackbox_zo.prefer.app import ANNOTATOR

    assert ANNOTATOR.fullmatch("alice") and not ANNOTATOR.fullmatch("evil\n")


def test_a_bad_include_regex_names_its_key(tmp_path, capsys):
    """Issue case 5: a bad regex in space.include named no key."""
    cfg = {"objective": {"factory": "objectives.recipes:builtin_sentiment"}, "space": {"include": ["ok", "("]},
           "output": str(tmp_path / "out")}
    with pytest.raises(ConfigError, match=r"space\.include\[1\]"):
        from blackbox_zo.setup.config import load_config

        load_config(cfg)


def test_zero_examples_per_class_is_refused_naming_the_setting():
    """Issue case 5: val_size=1 (0 per class) silently ran without validation."""
    from objectives.data import kshot

    with pytest.raises(ValueError, match="val_size=1"):
        kshot([{"label": 0}, {"label": 1}], 0, 0, asked="the 0 per class that objective.args.val_size=1 asks for")


def test_a_full_disk_is_not_masked_by_cannot_rollback(tmp_path):
    """Issue case 5: the vote page's log said "cannot rollback", hiding "database or disk is full"."""
    import sqlite3

    from blackbox_zo.prefer.store import Pair, VoteStore

    store = VoteStore(tmp_path / "votes.sqlite")
    store._db.execute("PRAGMA max_page_count = 1")  # no page to grow into: SQLITE_FULL, as on a full disk
    big = [Pair(f"0-0-{i}", 0, 0, i, "x" * 5000, "a", "b", False) for i in range(20)]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.add_pairs(big, list(range(20)))
    store.close()


def test_an_objective_that_returns_a_list_is_named_in_one_line():
    import pytest

    from blackbox_zo.setup.calls import value_of

    with pytest.raises(TypeError, match="an objective must return a number or a Score .* got list"):
        value_of([0.5, 0.7])
    assert value_of(0.5) == 0.5
    import torch

    assert value_of(torch.tensor(0.25)) == 0.25  # a 0-d tensor has __float__


def test_k_zero_is_named_as_k():
    import pytest

    from objectives.recipes import classification

    with pytest.raises(ValueError, match=r"k \(training examples per label\) must be an integer >= 1, got 0"):
        classification(data="unused", k=0)
