"""Configs fail before anything loads or is written: one line, exit 2, naming the file and the key. Alias bombs
are refused within a time limit, YAML errors name the file (not "<unicode string>"), every number is range-checked."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from blackbox_zo.prefer.config import load_prefer_config
from blackbox_zo.running.cli import main
from blackbox_zo.setup.config import ConfigError, load_config

LAUGHS = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)])  # 10^9 values


def good(tmp_path, **over) -> dict:
    cfg = {"objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {}},
           "output": str(tmp_path / "out")}
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def one_line(capsys, argv, *names) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("blackbox-zo: error: "), err
    for name in names:
        assert name in err[0], (name, err[0])
    return err[0]


@pytest.mark.parametrize("where", ["objective.args", "train.steps"])
def test_alias_bombs_are_refused_quickly(tmp_path, capsys, where):
    """Issue case: one bomb hung while objective.args was copied, another built a gigabyte error message."""
    text = LAUGHS + ("\nobjective: {factory: 'objectives.recipes:builtin_sentiment', args: {x: *a8}}\n"
                     if where == "objective.args" else
                     "\nobjective: {factory: 'objectives.recipes:builtin_sentiment'}\ntrain: {steps: *a8}\n")
    path = tmp_path / "bomb.yaml"
    path.write_text(text + f"output: {tmp_path / 'out'}\n")
    t0 = time.perf_counter()
    line = one_line(capsys, ["run", str(path)], str(path), "expands to more than")
    assert time.perf_counter() - t0 < 5 and len(line) < 400
    with pytest.raises(ConfigError, match="expands to more than"):
        load_prefer_config(path)
    loop = tmp_path / "loop.yaml"  # an alias inside itself: a list that contains itself
    loop.write_text("objective: &o {factory: 'a:b', args: {x: *o}}\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(loop)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, found", [
    ("objective: {factory: 'a:b'}\nmodel: [\n", "bad.yaml:3:1: not valid YAML"),
    ("objective: !!python/object/apply:os.system ['echo owned']\n", "bad.yaml:1:12: not valid YAML"),
    ("objective:\n\tfactory: x\n", "bad.yaml:2:1: not valid YAML"),
])
def test_yaml_errors_name_the_file_and_line(tmp_path, capsys, text, found):
    """Issue case: a syntax error or a !!python tag exited 1 naming "<unicode string>"."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = one_line(capsys, ["run", str(path)], found)
    assert "<unicode string>" not in line


def test_json_errors_name_the_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"objective": {"factory": "a:b",}}')
    one_line(capsys, ["run", str(path)], "bad.json: not valid JSON")
    path.write_text("[" * 100_000 + "]" * 100_000)  # deeper than Python's recursion limit
    one_line(capsys, ["run", str(path)], "bad.json")


@pytest.mark.parametrize("over, names", [
    ({"model": {"batch_size": 0}}, ["model.batch_size", "got 0"]),
    ({"optim": {"lr": 0}}, ["optim.lr must be > 0"]),
    ({"optim": {"lr": -1e-3}}, ["lr"]),
    ({"train": {"batch_size": 1_000_000_000}}, ["train.batch_size", "1000000000"]),
    ({"train": {"steps": 1_000_000_000_000}}, ["train.steps", "1000000000000"]),
    ({"train": {"steps": 0}}, ["train.steps"]),
    ({"train": {"eval_every": 0}}, ["train.eval_every"]),
    ({"train": {"patience": 0}}, ["train.patience"]),
    ({"space": {"lora_r": 0}}, ["space.lora_r"]),
    ({"space": {"prefix_tokens": -2}}, ["space.prefix_tokens"]),
    ({"space": {"mask_density": 1.5}}, ["space.mask_density"]),
    ({"distributed": {"cpus_per_worker": -1}}, ["distributed.cpus_per_worker"]),
])
def test_numbers_out_of_range_fail_before_the_model_loads(tmp_path, capsys, over, names):
    """Issue cases: model.batch_size 0 failed after the model loaded (rc 1), lr 0 and 1e9 / 1e12 were accepted."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps(good(tmp_path, **over)))
    one_line(capsys, ["run", str(path)], *names)
    assert not (tmp_path / "out").exists()


def test_prefer_config_ranges_and_file_errors(tmp_path):
    base = {"prompts": ["a?"], "optim": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="model.batch_size"):
        load_prefer_config({**base, "model": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        load_prefer_config({**base, "optim": {"lr": 0}})
    path = tmp_path / "p.yaml"
    path.write_text("prompts: [a\n")
    with pytest.raises(ConfigError, match="p.yaml:2:1: not valid YAML"):
        load_prefer_config(path)


def test_plain_aliases_still_work(tmp_path):
    """Refusing bombs keeps ordinary YAML anchors usable."""
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(good(tmp_path)) + "space: &s {kind: full}\n")
    assert load_config(path).space.kind == "full"
