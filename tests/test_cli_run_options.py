"""`blackbox-zo run` as a user meets it: paths relative to the config file, --output/--steps/--set, the closing
report (before -> after, the run folder, the samples), a quiet --quiet, and eval of the run from another folder."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from blackbox_zo.running.cli import report
from blackbox_zo.setup.config import ConfigError, load_config
from blackbox_zo.setup.overrides import apply_sets
from tests.test_cli_errors import COMMAND, config

SENTENCES = ["A fine film.", "A dull film.", "Great acting.", "Awful plot.", "Lovely music.", "Boring scenes."]


def project(folder):
    """A config with a factory module and a data folder beside it, every path in it relative."""
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        rows = "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES))
        (folder / "data" / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    (folder / "mytask.py").write_text(
        "from objectives.recipes import classification\n"
        "def build(data):\n"
        "    return classification('sst2', data=data, k=2, val_size=4)\n")
    return folder


@pytest.fixture(scope="module")
def finished(tiny_llama_dir, tmp_path_factory):
    """`run` from an unrelated working folder with --steps and --set: (config folder, working folder, result)."""
    root = tmp_path_factory.mktemp("options")
    folder = project(root / "proj")
    cfg = config(tiny_llama_dir, "out", objective={"factory": "mytask:build", "args": {"data": "data"}})
    (folder / "run.yaml").write_text(yaml.safe_dump(cfg))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([*COMMAND, "run", str(folder / "run.yaml"), "--steps", "1", "--set", "optim.lr=2e-3", "--quiet"],
                          capture_output=True, text=True, cwd=elsewhere, timeout=300)
    return folder, elsewhere, done


def test_paths_resolve_against_the_config_file(finished):
    folder, elsewhere, done = finished
    assert done.returncode == 0, done.stderr
    out = folder / "out"  # output: out in the config -> beside the config, not in the working folder
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["steps"] == 1 and saved["optim"]["lr"] == 2e-3  # --steps and --set applied
    assert saved["objective"]["args"]["data"] == str(folder / "data") and saved["objective"]["module_dir"] == str(folder)
    assert not (elsewhere / "out").exists()


def test_run_reports_before_after_and_the_run_folder_quietly(finished):
    folder, _, done = finished
    summary = json.loads((folder / "out" / "summary.json").read_text())
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"run folder: {folder / 'out'} ")
    assert lines[1].startswith(f"{summary['objective']} (validation): before {summary['val_start']:.4g} -> after "
                               f"{summary['val_final']:.4g} (best {summary['val_best']:.4g} at step {summary['best_step']})")
    f = summary["val_flips"]  # accuracy: 0/1 per example, so the sign test is reported
    assert lines[2].startswith(f"held-back examples fixed {f['fixed']}, broken {f['broken']}: exact sign test p = "
                               f"{f['sign_test_p']:.2g} ")
    rows = [json.loads(line) for line in (folder / "out" / "metrics.jsonl").read_text().splitlines()]
    assert (lines[3:] != []) == all(r["projected_grad"] == 0 for r in rows)  # the warning only when nothing moved
    assert done.stderr == ""  # --quiet: neither our bar nor transformers' "Loading weights" bar


def test_eval_finds_the_factory_module_from_another_folder(finished, tmp_path):
    folder, _, _ = finished
    done = subprocess.run([*COMMAND, "eval", str(folder / "out")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1])["value"] == summary["val_best"]


def test_output_flag_is_relative_to_the_working_folder(tiny_llama_dir, tmp_path):
    folder = project(tmp_path / "proj")
    cfg = config(tiny_llama_dir, "out", objective={"factory": "mytask:build", "args": {"data": "data"}},
                 train={"steps": 1, "batch_size": 4, "eval_every": 1, "plot": False})
    (folder / "run.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([*COMMAND, "run", str(folder / "run.yaml"), "--output", "mine", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mine" / "summary.json").exists() and not (folder / "out").exists()
    assert f"run folder: {'mine'}" in done.stdout


def test_report_names_the_samples_when_there_are_some(tmp_path):
    summary = {"objective": "vader", "val_start": 0.1, "val_final": 0.25, "val_best": 0.3, "best_step": 4, "steps": 6,
               "seconds": 12.0}
    assert not any(line.startswith("samples") for line in report(summary, tmp_path).splitlines())
    (tmp_path / "samples.jsonl").write_text("{}\n")
    text = report(summary, tmp_path)
    assert text.splitlines()[1] == f"samples: {tmp_path / 'samples.jsonl'}"
    assert text.splitlines()[-1] == "vader (validation): before 0.1 -> after 0.25 (best 0.3 at step 4); 6 steps, 12 s"
    no_val = report({"objective": "vader", "val_start": None, "val_final": None, "steps": 3}, tmp_path)
    assert no_val.splitlines()[-1].startswith("vader: no validation set")


def classification_run(tiny_llama_dir, folder, steps: int, **over) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`blackbox-zo run` of the SST-2 prompt on a 6-sentence file beside the config: (result, metrics rows)."""
    project(folder)
    args = {"task": "sst2", "data": "data", "k": 2, "val_size": 4, **over.pop("args", {})}
    cfg = config(tiny_llama_dir, "out", objective={"factory": "objectives.recipes:classification", "args": args},
                 train={"steps": steps, "batch_size": 4, "eval_every": steps, "plot": False}, **over)
    (folder / "run.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([*COMMAND, "run", str(folder / "run.yaml"), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done, [json.loads(line) for line in (folder / "out" / "metrics.jsonl").read_text().splitlines()]


def test_a_run_whose_gradient_stayed_zero_says_so_last_and_names_the_fix(tiny_llama_dir, tmp_path):
    """A radius far below what flips a prediction: both sides of every step score the same accuracy."""
    done, rows = classification_run(tiny_llama_dir, tmp_path / "p", 3, optim={"eps": 1e-9, "lr": 1e-3, "seed": 0})
    assert [r["projected_grad"] for r in rows] == [0.0, 0.0, 0.0]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("warning: the projected gradient was 0 on all 3 steps")
    assert "optim.eps (this run: 1e-09" in last and "train_objective: nll" in last


def test_a_run_trained_on_nll_names_the_validation_metric(tiny_llama_dir, tmp_path):
    """train_objective nll: the optimizer minimises cross-entropy; validation still measures (maximised) accuracy."""
    done, rows = classification_run(tiny_llama_dir, tmp_path / "p", 2, args={"train_objective": "nll"})
    summary = json.loads((tmp_path / "p" / "out" / "summary.json").read_text())
    assert summary["objective"] == "cross_entropy" and summary["train_maximize"] is False
    assert summary["val_objective"] == "label_word_accuracy" and summary["maximize"] is True
    header = json.loads((tmp_path / "p" / "out" / "trajectory.jsonl").read_text().splitlines()[0])
    assert header["config"]["spec"]["maximize"] is False
    line = [x for x in done.stdout.splitlines() if "before" in x][0]
    assert line.startswith(f"validation label_word_accuracy: before {summary['val_start']:.4g} -> after "
                           f"{summary['val_final']:.4g}")
    assert line.endswith("; trained on cross_entropy, minimised") and "cross_entropy (validation)" not in done.stdout
    assert all(r["projected_grad"] != 0 for r in rows) and "warning" not in done.stdout  # a smooth objective moves


def test_set_takes_dotted_keys_and_yaml_values(tmp_path):
    data = load_config({"objective": {"factory": "m:f"}}).to_dict()
    changed = apply_sets(data, ["optim.lr=1e-4", "train.plot=false", "space.include=[mlp, attn]", "objective.args.k=8"])
    cfg = load_config(changed)  # PyYAML reads 1e-4 as a string: the config check makes it a float
    assert cfg.optim.lr == 1e-4 and cfg.train.plot is False and cfg.space.include == ["mlp", "attn"]
    assert cfg.objective.args == {"k": 8} and data["optim"]["lr"] != 1e-4  # a copy: the input is untouched
    with pytest.raises(ConfigError, match="unknown key train.stepz"):
        load_config(apply_sets(data, ["train.stepz=3"]))
    with pytest.raises(ConfigError, match="optim.lr is not a section"):
        apply_sets(data, ["optim.lr.0=1"])


def test_relative_paths_in_a_config_file_mean_its_folder(tmp_path):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "objective": {"factory": "m:f", "args": {"path": "rows.jsonl", "data": "org/dataset", "label_file": "nope.txt",
                                                 "k": "rows.jsonl", "task": "sst2"}},
        "output": "runs/a"}))
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.output == str(tmp_path / "runs" / "a")
    # an existing relative path is rebased; a datasets name, a built-in task, a missing file and a non-path key are not
    assert cfg.objective.args == {"path": str(tmp_path / "rows.jsonl"), "data": "org/dataset", "label_file": "nope.txt",
                                  "k": "rows.jsonl", "task": "sst2"}
    assert cfg.objective.module_dir == str(tmp_path)


def test_a_local_package_named_like_ours_is_refused_but_a_checkout_is_not(tmp_path):
    from blackbox_zo.setup.assembly import check_no_shadow

    (tmp_path / "objectives").mkdir()
    (tmp_path / "objectives" / "__init__.py").write_text("")
    with pytest.raises(ConfigError, match=r"objectives has the name of the built-in package 'objectives'"):
        check_no_shadow(tmp_path)
    (tmp_path / "blackbox_zo").mkdir()  # both packages side by side: a copy of this project, its own code
    (tmp_path / "blackbox_zo" / "__init__.py").write_text("")
    check_no_shadow(tmp_path)
    (tmp_path / "blackbox_zo.py").write_text("")  # a module file is never our package
    with pytest.raises(ConfigError, match=r"blackbox_zo.py has the name of the built-in package 'blackbox_zo'"):
        check_no_shadow(tmp_path)
