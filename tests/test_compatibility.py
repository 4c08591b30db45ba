"""Every cross-section rule fails a run before the model loads or a Ray worker starts: one line naming the key,
no run folder written, in well under the time a model load takes; on one process and with distributed.workers.

Real parts: run() on the tiny Llama's folder, the built-in sentiment task, a judge's pairwise objective and a plain
scorer (the factories below); nothing is mocked.
"""

from __future__ import annotations

import time

import pytest

from blackbox_zo.running.run import run
from blackbox_zo.running.trainer import Trainer
from blackbox_zo.setup.config import ConfigError
from objectives import CallableJudge, Generation, PairwiseObjective

ROWS = [{"prompt": p} for p in ("one two", "The quick", "What is", "This movie")]


class ScoreOnly:
    name = "score_only"

    def evaluate(self, lm, batch, *, seed=None):
        return 0.0


def scorer_task():
    return {"train": ROWS, "objective": ScoreOnly()}


def pairwise_task():
    judge = CallableJudge(lambda p, a, b: (len(a) < len(b)) - (len(a) > len(b)))
    return {"train": ROWS, "objective": PairwiseObjective(judge, generation=Generation(max_new_tokens=4))}


SCORER = {"factory": "tests.test_compatibility:scorer_task", "args": {}}
PAIRWISE = {"factory": "tests.test_compatibility:pairwise_task", "args": {}}
TWO_WORKERS = {"workers": 2}

RULES = {  # name: (sections, the error's start)
    "kl_on_a_scorer": ({"objective": {**SCORER, "kl": 0.1}}, "objective.kl: score_only takes no KL brake"),
    "kl_on_workers": ({"objective": {**PAIRWISE, "kl": 0.1}, "optim": {"estimator": "pairwise"},
                       "distributed": TWO_WORKERS}, "objective.kl needs the model in this process"),
    "pairwise_estimator_on_a_scorer": ({"optim": {"estimator": "pairwise"}},
                                       "optim.estimator: 'pairwise' needs an objective that compares"),
    "pairwise_objective_on_spsa": ({"objective": PAIRWISE}, "objective.factory tests.test_compatibility:pairwise_task "
                                   "returns a pairwise objective"),
    "pairwise_split_batch": ({"objective": PAIRWISE, "optim": {"estimator": "pairwise"},
                              "distributed": {**TWO_WORKERS, "split": "batch"}}, "distributed.split 'batch'"),
    "conservative_on_workers": ({"optim": {"optimizer": "conservative"}, "distributed": TWO_WORKERS},
                                "distributed runs do not support optimizer 'conservative'"),
    "conservative_batched": ({"optim": {"optimizer": "conservative"}, "space": {"kind": "steer"}},
                             "optim.optimizer 'conservative' moves the weights"),
    "lr_zero": ({"optim": {"lr": 0.0}}, "optim.lr must be > 0"),
    "cma_on_a_pairwise_objective": ({"objective": PAIRWISE, "optim": {"optimizer": "cma", "eps": 0.5}},
                                    "optim.optimizer 'cma' runs in one process on scored objectives"),
    "cma_on_workers": ({"optim": {"optimizer": "cma", "eps": 0.5}, "distributed": TWO_WORKERS},
                       "optim.optimizer 'cma' runs in one process"),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_conflict_fails_before_the_model_loads(tiny_llama_dir, tmp_path, run_config, rule):
    sections, message = RULES[rule]
    out = tmp_path / "run"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        run(run_config(tiny_llama_dir, out, **sections))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not out.exists()  # the folder is locked (created) only once every check passed: nothing loaded
    assert time.perf_counter() - t0 < 10  # the built-in task's data loads; no model, no Ray


def test_no_ray_worker_starts_for_a_conflict_on_workers(tiny_llama_dir, tmp_path, run_config):
    ray = pytest.importorskip("ray")
    was_running = ray.is_initialized()
    sections, message = RULES["kl_on_workers"]
    with pytest.raises(ConfigError, match=message):
        run(run_config(tiny_llama_dir, tmp_path / "run", **sections))
    assert ray.is_initialized() == was_running


def test_the_rules_pass_a_config_that_combines_well(tiny_llama_dir, tmp_path, run_config):
    """conservative in place, in one process, with a positive lr: runs (the rules refuse only conflicts)."""
    cfg = run_config(tiny_llama_dir, tmp_path / "run", steps=1, optim={"optimizer": "conservative"},
                     space={"kind": "steer", "evaluate": "inplace"})
    assert run(cfg)["steps"] == 1


def test_a_hand_built_trainer_checks_the_same_contract():
    import torch

    import blackbox_zo as bz

    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="^optimizer maximize=False but objective score_only has maximize=True$"):
        Trainer(None, bz.MeZO(model), ScoreOnly(), ROWS)  # an objective without maximize is maximised
    with pytest.raises(ValueError, match="estimator='pairwise'"):
        Trainer(None, bz.MeZO(model, maximize=True), pairwise_task()["objective"], ROWS)
