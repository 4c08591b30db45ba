"""What tuning did to the text: samples.jsonl, text numbers beside the reward, the fluency bound, honest best step.

Real parts: a config run on a tiny real Llama with steering vectors, a length reward braked by `objective.kl`
against `UntunedLM`, and a validation objective whose answers turn into a loop at one validation (a scripted
objective, so which step is honest is known in advance).
"""

from __future__ import annotations

import json

import pytest

from blackbox_zo.running.artifacts import resolve_step
from blackbox_zo.running.run import run
from blackbox_zo.setup.fluency_bound import FluencyBound
from objectives import CompletionObjective, Generation, Reward, Score, mean_score, text_metrics

ROWS = [{"prompt": p} for p in ("Tell me about your day.", "What is a good breakfast?")]
FLUENT = ["It rained, so I read a book by the window.", "Eggs on toast with a cup of tea."]
LOOP = ["& & & & & & & & & & & & & & & &", "I'm a help I'm a help I'm a help I'm a help"]
# validation after each step: (value, answers); step 2 has the highest value, by looping text
SCRIPT = [(0.0, FLUENT), (1.0, FLUENT), (5.0, LOOP), (2.0, FLUENT), (1.5, FLUENT)]


def length_reward(prompts, completions, **_):
    return [float(len(c)) for c in completions]


class ScriptedValidation(CompletionObjective):
    """Validation i returns SCRIPT[i]: a value and its answers, whatever the weights (the bound is what is tested)."""

    name = "scripted"

    def __init__(self):
        self.calls = 0

    def outputs(self, lm, batch, *, seed=None):
        answers = SCRIPT[min(self.calls, len(SCRIPT) - 1)][1]
        return answers[:len(batch)]

    def score(self, batch, outputs) -> Score:
        value = SCRIPT[min(self.calls, len(SCRIPT) - 1)][0]
        self.calls += 1
        return mean_score(self.name, [value] * len(batch))


def scripted_task():
    reward = Reward(length_reward, generation=Generation(max_new_tokens=4))
    return {"train": ROWS, "val": ROWS, "objective": reward, "val_objective": ScriptedValidation()}


def test_a_loop_fails_the_bound_and_fluent_text_passes():
    bound = FluencyBound()
    start = text_metrics(FLUENT, nll=[1.0, 1.1])
    assert bound.breaches(start, text_metrics(FLUENT[::-1], nll=[1.1, 1.0])) == []
    assert "repeated_token_trigrams" in bound.breaches(start, text_metrics(["&&&&&&&&&&&&&&&&&&&&"] * 2))
    assert bound.breaches(start, text_metrics(FLUENT, nll=[1.5, 1.5])) == ["nll"]  # +0.45 nats/token
    assert "distinct_2" in bound.breaches(start, text_metrics(["Eggs on toast."] * 2))


def test_a_generation_run_stores_its_answers_and_picks_the_honest_best_step(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    cfg = {"model": {"name": str(tiny_llama_dir), "batch_size": 4}, "space": {"kind": "steer"},
           "objective": {"factory": "tests.test_generation_quality:scripted_task", "kl": 0.05},
           "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 1, "maximize": True},
           "train": {"steps": 4, "batch_size": 2, "eval_every": 1, "plot": True, "progress": False},
           "output": str(out)}
    summary = run(cfg)
    assert summary["best_step_unbounded"] == 2 and summary["val_best_unbounded"] == 5.0  # the loop scored highest
    assert summary["best_step"] == 3 and summary["val_best"] == 2.0  # the best step whose text stayed fluent
    assert resolve_step(out, "best", summary) == 3  # what export --step best / eval --step best rebuild
    assert summary["text_start"]["nll"] > 0 and summary["text_best"]["repeated_token_trigrams"] == 0.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert samples[4] == {"step": 2, "prompt": ROWS[0]["prompt"], "answer": LOOP[0], "reward": 5.0}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["val_repeated_token_trigrams"] > 0.5 and rows[0]["val_repeated_token_trigrams"] == 0.0
    assert {"val_nll", "val_distinct_2", "val_mean_length", "val_repeated_trigrams"} <= set(rows[0])
    assert (out / "objective.png").exists()


def test_the_kl_brake_comes_from_the_config(tiny_llama_dir, tmp_path):
    from blackbox_zo.lm import UntunedLM
    from blackbox_zo.setup.assembly import load_tuned
    from blackbox_zo.setup.config import ConfigError, load_config
    from blackbox_zo.setup.reference import attach_reference
    from blackbox_zo.setup.traits import with_traits

    cfg = load_config({"model": {"name": str(tiny_llama_dir)}, "space": {"kind": "steer"},
                       "objective": {"factory": "tests.test_generation_quality:scripted_task", "kl": 0.05}})
    loaded = load_tuned(cfg)
    task = with_traits({"objective": Reward(length_reward), "train": ROWS, "val": ROWS})
    given = dict(task)
    attached = attach_reference(cfg, task, loaded)
    assert task == given and "val_objective" not in task  # the task given is not changed: a new one comes back
    assert attached["objective"].kl == 0.05 and isinstance(attached["objective"].reference, UntunedLM)
    assert attached["val_objective"].kl == 0.0  # validation reports the reward itself
    assert attached["val_objective"].reference is attached["objective"].reference
    with pytest.raises(ConfigError, match="objective.kl must be a number >= 0"):
        load_config({"objective": {"factory": "a:b", "kl": -1}})


def reward_task():
    reward = Reward(length_reward, generation=Generation(max_new_tokens=5))
    return {"train": ROWS, "val": ROWS, "objective": reward}


def test_eval_shows_the_text_numbers_and_tuned_answers_beside_the_untuned(tiny_llama_dir, tmp_path, capsys):
    from blackbox_zo.running.cli import main

    out = tmp_path / "run"
    cfg = {"model": {"name": str(tiny_llama_dir), "batch_size": 4}, "space": {"kind": "steer"},
           "objective": {"factory": "tests.test_generation_quality:reward_task", "kl": 0.05},
           "optim": {"lr": 0.05, "eps": 1e-2, "seed": 1, "maximize": True},
           "train": {"steps": 2, "batch_size": 2, "eval_every": 1, "plot": False, "progress": False},
           "output": str(out)}
    run(cfg)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    capsys.readouterr()
    assert main(["eval", str(out), "--step", "2", "--show", "2"]) == 0
    printed = capsys.readouterr().out
    line = json.loads(printed.splitlines()[0])
    assert line["step"] == 2 and set(line["text"]) >= {"nll", "repeated_trigrams", "distinct_2", "mean_length"}
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert line["value"] == rows[-1]["val"] and line["text"]["nll"] == pytest.approx(rows[-1]["val_nll"])
    assert "[1] Tell me about your day.\n  untuned (step 0):\n" in printed and "  tuned (step 2):\n" in printed
    for s in samples:  # step 0's answers shown as untuned; the rebuilt step 2 writes the answers the run stored
        if s["step"] in (0, 2) and s["answer"].strip():
            assert s["answer"].strip() in printed


def test_tensorboard_plots_the_text_numbers_beside_the_value(tiny_llama_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="train.tensorboard needs the 'tensorboard' extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = {"model": {"name": str(tiny_llama_dir), "batch_size": 4}, "space": {"kind": "steer"},
           "objective": {"factory": "tests.test_generation_quality:scripted_task"},
           "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 1, "maximize": True},
           "train": {"steps": 2, "batch_size": 2, "eval_every": 1, "progress": False, "tensorboard": True},
           "output": str(out)}
    run(cfg)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val", "val_nll", "val_distinct_2", "val_repeated_token_trigrams", "val_mean_length"} <= tags
    assert [e.step for e in events.Scalars("val_repeated_token_trigrams")] == [1, 2]
    assert events.Scalars("val_repeated_token_trigrams")[1].value > 0.5  # step 2's loop, as metrics.jsonl says
