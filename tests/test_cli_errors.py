"""Every user error of the `blackbox-zo` command prints one line naming the thing, and exits non-zero.

Each case runs the installed console script (or `python -m blackbox_zo.running.cli`) in a subprocess, as a user
would, against a tiny random Llama saved to disk and a finished 2-step run.
"""

from __future__ import annotations

import json
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


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """The result is a failure whose stderr is exactly one `blackbox-zo: error:` line naming each of `names`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result
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
        "model_flag_hub_id": Case([*run("hub"), "--model", "HuggingFaceTB/SmolLM2-135M"], ["HuggingFaceTB/SmolLM2-135M", "hub"]),
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


CASE_NAMES = ["missing_data_folder", "corrupt_jsonl_line", "objective_args_typo", "unknown_config_key",
              "model_flag_missing_dir", "model_flag_hub_id", "missing_run_dir", "replay_compare_missing",
              "export_to_a_file", "export_non_empty_dir", "export_force_over_a_run", "missing_argument", "unknown_command",
              "prefer_without_config",
              *(f"step_{s}_{c}" for s in ("bset", "99", "minus1") for c in ("eval", "export"))]


@pytest.fixture(scope="module")
def error_runs(tiny_llama_dir, finished_run, tmp_path_factory):
    """All error cases run at once (4 at a time: each process spends seconds importing torch)."""
    root = tmp_path_factory.mktemp("cli_errors")
    cases = error_cases(root, tiny_llama_dir, finished_run)
    assert sorted(cases) == sorted(CASE_NAMES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(cli, *case.args, cwd=case.cwd) for name, case in cases.items()}
        results = {name: (f.result(), cases[name].names) for name, f in futures.items()}
    return root, results


@pytest.mark.parametrize("case", CASE_NAMES)
def test_user_error_is_one_line_naming_the_thing(error_runs, case):
    root, results = error_runs
    result, names = results[case]
    one_line_error(result, *names)
    assert (root / "model.safetensors").read_text() == "keep me"  # nothing written over the file
    assert sorted(p.name for p in (root / "full").iterdir()) == ["notes.txt"]  # nor into the non-empty folder
    assert not (root / "x").exists()


def test_export_force_replaces_a_non_empty_directory(finished_run, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = cli("export", finished_run, "--out", out, "--force")
    assert done.returncode == 0, done.stderr
    assert not (out / "notes.txt").exists() and (out / "config.json").exists()  # replaced, not mixed


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
