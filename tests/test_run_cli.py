"""Runs from a config end to end on a tiny real Llama: validation first, logs, resume, export, replay, CLI."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from blackbox_zo.running.cli import main
from blackbox_zo.running.run import run
from blackbox_zo.setup.config import ConfigError, load_config


@pytest.fixture
def model_dir(tiny_llama, tmp_path):
    model, tok = tiny_llama
    path = tmp_path / "tiny"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def config(model_dir, out, steps=6, **over):
    cfg = {
        "model": {"name": str(model_dir), "batch_size": 8},
        "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
        "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 3},
        "train": {"steps": steps, "batch_size": 8, "eval_every": 3, "plot": True},
        "output": str(out),
    }
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"optim": {"lrr": 1}}, "unknown key optim.lrr"),
        ({"train": {"steps": "ten"}}, "train.steps: expected int"),
        ({"space": {"kind": "adapter"}}, "space.kind: 'adapter' is not one of"),
        ({"objective": {"factory": "objectives.recipes"}}, "module:function"),
        ({"colour": "blue"}, "unknown key colour"),
    ],
)
def test_bad_config_is_rejected_before_anything_is_written(tmp_path, patch, message):
    cfg = config(tmp_path / "no-model", tmp_path / "out", **patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    assert main(["run", str(path), "--quiet"]) == 2
    assert not (tmp_path / "out").exists()


def test_hub_id_fails_with_a_useful_message(tmp_path):
    cfg = config("HuggingFaceTB/SmolLM2-135M", tmp_path / "out", steps=1)
    with pytest.raises(Exception, match="(?i)network|hub"):
        run(cfg, progress=False)


def test_run_logs_resumes_exports_and_replays(model_dir, tmp_path):
    full = run(config(model_dir, tmp_path / "full", steps=6), progress=False)
    assert full["steps"] == 6 and full["val_start"] is not None
    out = tmp_path / "full"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
    assert len((out / "trajectory.jsonl").read_text().splitlines()) == 7  # header + 6 steps
    assert (out / "objective.png").stat().st_size > 1000

    with pytest.raises(ConfigError, match="--resume"):
        run(config(model_dir, out, steps=6), progress=False)

    # interrupted after 3 steps, then resumed to 6: same weights as the uninterrupted run
    run(config(model_dir, tmp_path / "split", steps=3), progress=False)
    resumed = run(config(model_dir, tmp_path / "split", steps=6), resume=True, progress=False)
    # the summary covers the whole run, not only the resumed half: start value, best step, flips
    same = ("val_start", "val_best", "best_step", "val_final", "val_flips", "steps")
    assert {k: resumed.get(k) for k in same} == {k: full.get(k) for k in same}
    assert main(["export", str(out), "--step", "last", "--out", str(tmp_path / "a")]) == 0
    assert main(["export", str(tmp_path / "split"), "--step", "last", "--out", str(tmp_path / "b")]) == 0
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    base = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it was tuned


def test_replay_command_matches_export(model_dir, tmp_path, capsys):
    run(config(model_dir, tmp_path / "r", steps=4), progress=False)
    assert main(["export", str(tmp_path / "r"), "--step", "last", "--out", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    assert main(["replay", str(tmp_path / "r"), "--step", "last", "--compare", str(tmp_path / "exp")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps_replayed"] == 4 and report["max_abs_diff"] == 0.0


def test_lora_and_prefix_runs_tune_only_their_tensors(model_dir, tmp_path):
    for kind in ("lora", "prefix", "steer"):
        s = run(config(model_dir, tmp_path / kind, steps=2, space={"kind": kind}), progress=False)
        assert s["steps"] == 2 and 0 < s["tuned_elements"] < 20_000
    assert s["tuned_elements"] == 64  # one vector of hidden_size after each of the 2 layers (1/3 and 2/3 up)


def test_console_script_help():
    exe = shutil.which("blackbox-zo")
    cmd = [exe] if exe else [sys.executable, "-m", "blackbox_zo.running.cli"]
    for sub in ([], ["run"], ["demo"], ["eval"], ["export"], ["replay"]):
        out = subprocess.run(cmd + sub + ["--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: blackbox-zo" in out.stdout


def test_paired_flips_sign_test():
    from blackbox_zo.running.artifacts import paired_flips

    before = [0.0] * 12 + [1.0] * 10
    after = [1.0] * 10 + [0.0] * 2 + [1.0] * 10  # 10 fixed, 0 broken
    f = paired_flips(before, after)
    assert f["fixed"] == 10 and f["broken"] == 0
    assert abs(f["sign_test_p"] - 2 / 2**10) < 1e-12
    assert paired_flips([0.5], [1.0]) is None  # not 0/1 scores
    assert paired_flips(before, before)["sign_test_p"] == 1.0


def test_a_run_shorter_than_eval_every_exports_its_tuned_weights(model_dir, tmp_path):
    """Trap: validation only every eval_every steps made a 2-step run's best = step 0, so export saved the base model."""
    from transformers import AutoModelForCausalLM

    s = run(config(model_dir, tmp_path / "short", steps=2, export=True, train={"eval_every": 25}), progress=False)
    assert s["best_step"] == 2 and s["val_best"] == s["val_final"]  # measured after the last step
    assert main(["export", str(tmp_path / "short"), "--step", "last", "--out", str(tmp_path / "last")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(s["exported"]).state_dict()
    last = AutoModelForCausalLM.from_pretrained(tmp_path / "last").state_dict()
    base = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert all(torch.equal(exported[k], last[k]) for k in exported)  # the last step's weights
    assert any(not torch.equal(exported[k], base[k]) for k in exported)  # not the base model


def test_factory_module_in_the_working_folder_runs_from_the_console_script(model_dir, tmp_path):
    """`factory: mytask:build` names ./mytask.py; the installed script must find it as `python -m` would."""
    (tmp_path / "mytask.py").write_text(
        "from objectives import get_task\n"
        "def build(metric):\n"
        "    rows = [{'sentence': s, 'label': l} for s, l in [('a great film', 1), ('a dull mess', 0)] * 4]\n"
        "    return {'train': rows, 'val': rows, 'objective': get_task('sst2').objective(metric=metric)}\n")
    cfg = config(model_dir, tmp_path / "out", steps=1, objective={"factory": "mytask:build", "args": {"metric": "accuracy"}})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    exe = shutil.which("blackbox-zo")
    cmd = [exe] if exe else [sys.executable, "-m", "blackbox_zo.running.cli"]
    done = subprocess.run([*cmd, "run", "run.yaml", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 1


def test_a_config_runs_the_pairwise_estimator_with_a_judge(model_dir, tmp_path, monkeypatch, capsys):
    """A factory may return a PairwiseObjective: run() passes it as compare and the Trainer steps on preferences."""
    (tmp_path / "judge_task_factory.py").write_text(
        "from objectives import CallableJudge, Generation, PairwiseObjective\n"
        "def build():\n"
        "    judge = CallableJudge(lambda p, a, b: (len(a) < len(b)) - (len(a) > len(b)))\n"
        "    rows = [{'prompt': p} for p in ('one two', 'The quick', 'What is', 'This movie')]\n"
        "    return {'train': rows, 'objective': PairwiseObjective(judge, generation=Generation(\n"
        "        max_new_tokens=6, temperature=1.0))}\n")
    monkeypatch.chdir(tmp_path)  # the factory module sits in the working folder
    cfg = config(model_dir, tmp_path / "pref", steps=3, objective={"factory": "judge_task_factory:build", "args": {}},
                 optim={"estimator": "pairwise", "lr": 0.5, "eps": 0.5})
    s = run(cfg, progress=False)
    log = [json.loads(x) for x in (tmp_path / "pref" / "trajectory.jsonl").read_text().splitlines()]
    prefs = [v for r in log[1:] for v in r["values"]]
    assert s["steps"] == 3 and len(prefs) == 3 and any(p != 0 for p in prefs)
    assert s["final_fingerprint"] != log[0]["base_fingerprint"]  # the preferences moved the weights
    assert main(["eval", str(tmp_path / "pref")]) == 2  # nothing that scores: one line, not an AttributeError
    assert "eval needs an objective that scores" in capsys.readouterr().err


def test_eval_reproduces_the_logged_value_of_a_sampled_objective(model_dir, tmp_path, capsys):
    """Trap: eval sampled with seed 0, the trainer with its own validation seed: a sampled reward disagreed."""
    cfg = config(model_dir, tmp_path / "vader", steps=1, objective={
        "factory": "objectives.recipes:vader_prompts", "args": {"max_new_tokens": 6, "temperature": 1.0}})
    s = run(cfg, progress=False)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "vader"), "--step", "last"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["value"] == s["val_final"]
    from blackbox_zo.running.artifacts import rebuild
    from blackbox_zo.setup.assembly import build_task

    rebuilt, loaded, _ = rebuild(tmp_path / "vader", "last")
    task = build_task(rebuilt)
    assert task["objective"].evaluate(loaded.lm, task["val"], seed=0).value != s["val_final"]  # the seed matters


def test_yaml_scientific_notation_is_a_number(tmp_path):
    # trap: PyYAML follows YAML 1.1, where `1e-6` (no dot) is a string, not a float
    path = tmp_path / "c.yaml"
    path.write_text("objective: {factory: 'a:b'}\noptim: {lr: 1e-6, eps: 1.0e-3}\n")
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == "1e-6"
    cfg = load_config(path)
    assert cfg.optim.lr == 1e-6 and cfg.optim.eps == 1e-3
    path.write_text("objective: {factory: 'a:b'}\noptim: {lr: fast}\n")
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        load_config(path)


def test_export_at_the_end_of_a_run_equals_a_replayed_export(model_dir, tmp_path):
    # the run saves its live weights when the best step is the last one, else replays: both must agree
    from transformers import AutoModelForCausalLM

    for steps, eval_every in ((3, 3), (6, 3)):
        out = tmp_path / f"run{steps}"
        s = run(config(model_dir, out, steps=steps, export=True, train={"eval_every": eval_every}), progress=False)
        assert main(["export", str(out), "--step", "best", "--out", str(tmp_path / f"again{steps}")]) == 0
        a = AutoModelForCausalLM.from_pretrained(s["exported"]).state_dict()
        b = AutoModelForCausalLM.from_pretrained(tmp_path / f"again{steps}").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_over_the_top_layer_caches_the_trunk_and_logs_what_a_full_forward_would(model_dir, tmp_path, monkeypatch):
    from blackbox_zo.lm import trunk

    top = {"include": [r"layers\.1\.", r"model\.norm"]}
    big = {"eps": 0.3}  # large enough that the two sides of a step score different accuracies
    cached = run(config(model_dir, tmp_path / "cached", steps=4, space=top, optim=big), progress=False)
    assert cached["trunk_cached_below_layer"] == 1  # layer 0 is frozen: its outputs are reused
    assert "trunk_cached_below_layer" not in run(config(model_dir, tmp_path / "all", steps=1), progress=False)
    monkeypatch.setattr(trunk, "trunk_start", lambda model, tuned: None)  # the same run with full forwards
    full = run(config(model_dir, tmp_path / "full", steps=4, space=top, optim=big), progress=False)
    rows = [[json.loads(line)["projected_grad"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("cached", "full")]
    assert any(g != 0.0 for g in rows[1]) and rows[0] == pytest.approx(rows[1], abs=1e-6)
    assert cached["val_final"] == pytest.approx(full["val_final"], abs=1e-6)
