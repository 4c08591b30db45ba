"""Every user error of the `blackbox-zo` command prints one line naming the thing, and exits non-zero.

Each case runs the installed console script (or `python -m blackbox_zo.running.cli`) in a subprocess, as a user
would, against a tiny random Llama saved to disk and a finished 2-step run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from blackbox_zo.running.run import run

COMMAND = [shutil.which("blackbox-zo")] if shutil.which("blackbox-zo") else [sys.executable, "-m", "blackbox_zo.running.cli"]


def config(model_dir, out, **over) -> dict:
    """A 2-step run of the built-in sentiment task on the tiny model; `over` replaces whole sections."""
    cfg = {
        "model": {"name": str(model_dir), "batch_size": 8},
        "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
        "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 3},
        "train": {"steps": 2, "batch_size": 8, "eval_every": 25, "plot": False},
        "output": str(out),
    }
    cfg.update(over)
    return cfg


def cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """The result is a failure whose stderr is exactly one `blackbox-zo: error:` line naming each of `names`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("blackbox-zo: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    summary = run(config(tiny_llama_dir, out), progress=False)
    assert summary["steps"] == 2
    return out


def write_config(folder, cfg) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


class Case(NamedTuple):
    args: list  # the command line after `blackbox-zo`
    names: list[str]  # what the one error line must contain
    cwd: Path | None = None  # the working folder (None: the test's)
    env: dict | None = None  # environment variables set on top of the test's


def error_cases(root: Path, model_dir: Path, done: Path) -> dict[str, Case]:
    """Every user error the CLI must report in one line, set up under `root` against the finished run `done`."""
    factory_dir = root / "factory"  # a task module in the working folder, reading a JSONL file with a bad line 2
    factory_dir.mkdir()
    (factory_dir / "rows.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b",\n')
    (factory_dir / "mytask.py").write_text(
        "from objectives import load_examples, vader_reward\n"
        "def build(path):\n"
        "    return {'train': load_examples(path), 'objective': vader_reward()}\n")
    (root / "model.safetensors").write_text("keep me")
    (root / "full").mkdir()
    (root / "full" / "notes.txt").write_text("mine")

    def run(name: str, **over) -> list:
        return ["run", write_config(root / name, config(model_dir, root / name / "out", **over)), "--quiet"]

    def factory(spec: str, **args) -> dict:
        return {"factory": spec, "args": args}

    cases = {
        "missing_data_folder": Case(run("data", objective=factory("objectives.recipes:classification",
                                                                    data=str(root / "no_such_folder"))),
                                    ["no_such_folder", "train.tsv"]),
        "corrupt_jsonl_line": Case(["run", write_config(factory_dir, config(
            model_dir, root / "f", objective=factory("mytask:build", path="rows.jsonl")))],
            ["rows.jsonl, line 2"], factory_dir),
        "objective_args_typo": Case(run("typo", objective=factory("objectives.recipes:builtin_sentiment", metrc="accuracy")),
                                    ["objective.args.metrc", "metric"]),
        "unknown_config_key": Case(run("key", train={"stepz": 2}), ["train.stepz"]),
        "model_flag_missing_dir": Case([*run("model"), "--model", root / "no_model_here"], ["no_model_here", "does not exist"]),
        "model_flag_hub_id": Case([*run("hub"), "--model", "HuggingFaceTB/SmolLM2-135M"],
                                  ["HuggingFaceTB/SmolLM2-135M", "not in the local Hugging Face cache", "HF_HUB_OFFLINE"],
                                  env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "empty_hf_cache")}),
        **more_error_cases(root, model_dir, run, factory),
        "missing_run_dir": Case(["eval", root / "nope"], ["nope", "does not exist"]),
        "replay_compare_missing": Case(["replay", done, "--compare", root / "absent"], ["absent", "does not exist"]),
        "export_to_a_file": Case(["export", done, "--out", root / "model.safetensors"], ["model.safetensors", "is a file"]),
        "export_non_empty_dir": Case(["export", done, "--out", root / "full"], ["full", "--force"]),
        "export_force_over_a_run": Case(["export", done, "--out", done, "--force"], ["trajectory.jsonl"]),
        "missing_argument": Case(["export"], ["--out"]),
        "unknown_command": Case(["exprt"], ["exprt"]),
        "prefer_without_config": Case(["prefer"], ["config", "blackbox-zo prefer --help"]),
    }
    for label, step, names in (("bset", "bset", ["'bset'", "best", "last", "0-2"]),
                               ("99", "99", ["--step 99", "0-2"]), ("minus1", "-1", ["--step -1", "0-2"])):
        cases[f"step_{label}_eval"] = Case(["eval", done, "--step", step], names)
        cases[f"step_{label}_export"] = Case(["export", done, "--step", step, "--out", root / "x"], names)
    return cases


MORE_CASES = ["include_matches_nothing", "device_not_here", "tensorboard_missing", "pairwise_without_estimator",
              "pairwise_estimator_with_a_score", "reward_raises", "fewer_than_val_size", "missing_column",
              "data_name_offline", "local_objectives_py", "set_unknown_key", "set_without_equals", "set_bad_yaml"]


def more_error_cases(root: Path, model_dir: Path, run, factory) -> dict[str, Case]:
    """The errors of issue 32: each one line, exit 2, naming the key or the reward, before the model loads where it can."""
    module = (
        "from objectives import CallableJudge, Generation, PairwiseObjective, Reward\n"
        "ROWS = [{'prompt': p} for p in ('one two', 'The quick', 'What is', 'This movie')]\n"
        "def broken_reward(prompts, completions, **kwargs):\n"
        "    raise RuntimeError('the scoring API said no')\n"
        "def raising():\n"
        "    return {'train': ROWS, 'val': ROWS, 'objective': Reward(broken_reward, generation=Generation(max_new_tokens=2))}\n"
        "def judged():\n"
        "    judge = CallableJudge(lambda p, a, b: 0, name='length_judge')\n"
        "    return {'train': ROWS, 'objective': PairwiseObjective(judge, generation=Generation(max_new_tokens=2))}\n")
    small = root / "small_data"  # 3 + 3 training rows, 2 + 2 validation rows
    small.mkdir()
    (small / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(6)))
    (small / "validation.tsv").write_text("sentence\tlabel\n" + "".join(f"v{i}\t{i % 2}\n" for i in range(4)))
    wrong = root / "wrong_columns"
    wrong.mkdir()
    (wrong / "train.csv").write_text("text,label\na,0\nb,1\n")
    (wrong / "validation.csv").write_text("text,label\na,0\nb,1\n")
    shadowed = root / "shadowed"  # a user's objectives.py in the working folder would replace the built-in package
    shadowed.mkdir()
    (shadowed / "objectives.py").write_text("print('mine')\n")
    device = "cuda:99" if importlib.util.find_spec("torch") and __import__("torch").cuda.is_available() else "cuda"

    def beside_tasks(name: str, spec: str, **over) -> list:
        """A config beside the factory's module mytasks.py: found from any working folder."""
        (root / name).mkdir()
        (root / name / "mytasks.py").write_text(module)
        return ["run", write_config(root / name, config(model_dir, root / name / "out", objective=factory(spec), **over)),
                "--quiet"]

    sst2 = factory("objectives.recipes:classification", data=str(small), k=3, val_size=8)
    return {
        "include_matches_nothing": Case(run("include", space={"include": ["no_such_param"]}),
                                        ["space.include", "no_such_param", "selects none"]),
        "device_not_here": Case(run("device", model={"name": str(model_dir), "device": device}), ["model.device", device]),
        "tensorboard_missing": Case(run("tb", train={"steps": 2, "tensorboard": True}), ["train.tensorboard", "pip install"],
                                    env={"PYTHONPATH": str(without_tensorboard(root))}),
        "pairwise_without_estimator": Case(beside_tasks("pairwise", "mytasks:judged"),
                                           ["mytasks:judged", "pairwise objective", "optim.estimator: pairwise"]),
        "pairwise_estimator_with_a_score": Case(run("scored", optim={"estimator": "pairwise"}),
                                                ["optim.estimator", "scores"]),
        "reward_raises": Case(beside_tasks("raises", "mytasks:raising"),
                              ["broken_reward raised RuntimeError", "the scoring API said no"]),
        "fewer_than_val_size": Case(run("valsize", objective=sst2), ["objective.args.val_size=8", "4 per class", "has 2"]),
        "missing_column": Case(run("column", objective=factory("objectives.recipes:classification", data=str(wrong))),
                               ["train.csv", "'sentence'", "text, label"]),
        "data_name_offline": Case(run("dname", objective=factory("objectives.recipes:classification", data="nobody/nothing")),
                                  ["nobody/nothing", "cannot be reached", "save_to_disk"], env={"HF_HUB_OFFLINE": "1"}),
        "local_objectives_py": Case(["run", write_config(shadowed, config(model_dir, root / "shadow_out"))],
                                    ["objectives.py", "built-in package 'objectives'", "rename"], shadowed),
        "set_unknown_key": Case([*run("set1"), "--set", "train.stepz=3"], ["train.stepz"]),
        "set_without_equals": Case([*run("set2"), "--set", "optim.lr"], ["--set", "key=value"]),
        "set_bad_yaml": Case([*run("set3"), "--set", "optim.lr=[1,"], ["--set", "not valid YAML"]),
    }


CASE_NAMES = ["missing_data_folder", "corrupt_jsonl_line", "objective_args_typo", "unknown_config_key",
              "model_flag_missing_dir", "model_flag_hub_id", "missing_run_dir", "replay_compare_missing",
              "export_to_a_file", "export_non_empty_dir", "export_force_over_a_run", "missing_argument", "unknown_command",
              "prefer_without_config", *MORE_CASES,
              *(f"step_{s}_{c}" for s in ("bset", "99", "minus1") for c in ("eval", "export"))]


@pytest.fixture(scope="module")
def error_runs(tiny_llama_dir, finished_run, tmp_path_factory):
    """All error cases run at once (4 at a time: each process spends seconds importing torch)."""
    root = tmp_path_factory.mktemp("cli_errors")
    cases = error_cases(root, tiny_llama_dir, finished_run)
    assert sorted(cases) == sorted(CASE_NAMES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(cli, *case.args, cwd=case.cwd, env=case.env) for name, case in cases.items()}
        results = {name: (f.result(), cases[name].names) for name, f in futures.items()}
    return root, results


def without_tensorboard(root: Path) -> Path:
    """A folder whose sitecustomize hides an installed tensorboard (sys.modules[name] = None: find_spec says None
    and import fails, as on a machine without the extra); the dev extra installs it for the TensorBoard test."""
    folder = root / "no_tensorboard"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None\n")
    return folder


@pytest.mark.parametrize("case", CASE_NAMES)
def test_user_error_is_one_line_naming_the_thing(error_runs, case):
    root, results = error_runs
    result, names = results[case]
    one_line_error(result, *names)
    assert (root / "model.safetensors").read_text() == "keep me"  # nothing written over the file
    assert sorted(p.name for p in (root / "full").iterdir()) == ["notes.txt"]  # nor into the non-empty folder
    assert not (root / "x").exists()


def test_export_force_replaces_an_earlier_export_only(finished_run, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = cli("export", finished_run, "--out", out, "--force")  # not a folder export made: never deleted
    assert refused.returncode == 2 and "not an earlier export" in refused.stderr
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert cli("export", finished_run, "--out", out).returncode == 0
    (out / "stale.safetensors").write_text("old shard")
    done = cli("export", finished_run, "--out", out, "--force")
    assert done.returncode == 0, done.stderr
    assert not (out / "stale.safetensors").exists() and (out / "config.json").exists()  # replaced, not mixed


def test_debug_shows_the_traceback(tmp_path):
    result = cli("eval", tmp_path / "nope", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "does not exist" in result.stderr


def test_messages_name_the_step_they_used(finished_run, tmp_path):
    summary = json.loads((finished_run / "summary.json").read_text())
    result = cli("export", finished_run, "--out", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    assert f"at step {summary['best_step']} (best: validation {summary['val_best']:.4g})" in result.stdout
    result = cli("eval", finished_run)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # the same seed as the trainer's validation: eval at the best step reproduces the logged best value
    assert report["step"] == summary["best_step"] and report["value"] == summary["val_best"]


NO_TORCH = ("import sys\nfrom blackbox_zo.running.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(code)")


@pytest.mark.parametrize("args, names", [
    (["run", "{bad}"], ["train.stepz"]),
    (["demo", "--steps", "0"], ["train.steps"]),
    (["prefer", "{bad}"], ["unknown key objective"]),
    (["eval", "{missing}"], ["no_run", "does not exist"]),
    (["export", "{missing}", "--out", "{missing}_out"], ["no_run", "does not exist"]),
    (["--help"], []),
])
def test_help_and_config_errors_answer_without_importing_torch(tmp_path, args, names):
    """Importing torch costs seconds on a small CPU: the CLI validates first, and `import blackbox_zo` is lazy."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"objective": {"factory": "objectives.recipes:builtin_sentiment"},
                                   "train": {"stepz": 2}}))
    argv = [a.format(bad=bad, missing=tmp_path / "no_run") for a in args]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "no torch", result
    if names:
        one_line_error(result, *names)
    else:
        assert result.returncode == 0 and "usage: blackbox-zo" in result.stdout


FLAKY = '''import os

from objectives.base import check_values
from objectives.recipes import builtin_sentiment


class Flaky:
    """The task's objective until call FLAKY_FAIL_AT of this process, then a NaN reward (as a reward server's)."""

    def __init__(self, inner):
        self.inner, self.name, self.maximize, self.calls = inner, "flaky", inner.maximize, 0

    def evaluate(self, lm, batch, seed=None):
        self.calls += 1
        if self.calls >= int(os.environ.get("FLAKY_FAIL_AT", "1000000")):
            check_values(self.name, [float("nan")], 1, what="rewards")
        return self.inner.evaluate(lm, batch, seed=seed)


def build():
    task = builtin_sentiment()
    return {**task, "objective": Flaky(task["objective"]), "val_objective": task["objective"]}
'''


def test_a_failure_mid_run_says_what_was_kept_and_resume_continues(tiny_llama_dir, tmp_path):
    """Step 3's first point gets a NaN reward: steps 1-2 stand (logged, their weights kept), counted from 1 as
    metrics.jsonl counts them, and `--resume` goes on from step 3 once the objective is fixed."""
    (tmp_path / "flaky.py").write_text(FLAKY)
    cfg = config(tiny_llama_dir, "out", objective={"factory": "flaky:build", "args": {}},
                 train={"steps": 4, "batch_size": 8, "eval_every": 25, "plot": False})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    failed = cli("run", tmp_path / "run.yaml", "--quiet", env={"FLAKY_FAIL_AT": "5"})  # calls 1-4: steps 1-2 (+ and -)
    line = one_line_error(failed, "flaky: rewards[0] is not finite: nan", "(step 3, point 0")
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert "steps 1-2 stand: the weights are those of step 2" in line
    assert f"{tmp_path / 'out'} keeps steps 1-2" in line and "rerun with --resume to continue from step 3" in line
    resumed = cli("run", tmp_path / "run.yaml", "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_version_is_written_once_and_printed():
    """`blackbox-zo --version` prints blackbox_zo.__version__; pyproject.toml reads it; CHANGELOG.md has its section."""
    import tomllib

    from blackbox_zo import __version__

    root = Path(__file__).resolve().parent.parent
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"blackbox-zo {__version__}"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "blackbox_zo.__version__"}
    assert f"## [{__version__}]" in (root / "CHANGELOG.md").read_text()


def test_a_missing_relative_data_path_names_the_absolute_path_tried_and_the_rule(tiny_llama_dir, tmp_path):
    """data: a relative path found neither beside the config nor in the working folder: the line shows the absolute
    path tried and says how a config's relative paths are read; once the folder is beside the config, it runs."""
    cfg = config(tiny_llama_dir, "out", objective={"factory": "objectives.recipes:classification",
                                                   "args": {"data": "my_data", "k": 2, "val_size": 2}})
    path = write_config(tmp_path / "project", cfg)
    (tmp_path / "elsewhere").mkdir()
    failed = cli("run", path, "--quiet", cwd=tmp_path / "elsewhere")
    one_line_error(failed, f"data my_data does not exist (looked for {tmp_path / 'elsewhere' / 'my_data'};",
                   "relative to the config file's folder, then to the working folder")
    (tmp_path / "project" / "my_data").mkdir()
    for split in ("train", "validation"):
        (tmp_path / "project" / "my_data" / f"{split}.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\nfine\t1\nawful\t0\n")
    done = cli("run", path, "--quiet", cwd=tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "project" / "out" / "summary.json").is_file()  # output: out, beside the config too
