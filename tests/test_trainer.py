"""The trainer on a real toy problem: best step as a trajectory position, early stop, logs, plot."""

import json

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.running.trainer import TrainConfig, Trainer, batch_for_step
from tests.zo_toy import make_problem, zero_one_error


class ToyAccuracy:
    """Accuracy of a linear classifier on the rows of a batch (each row holds x and y)."""

    name, maximize = "accuracy", True

    def __init__(self, model):
        self.model = model

    def evaluate(self, lm, batch, seed=None):
        X = torch.stack([r["x"] for r in batch])
        y = torch.stack([r["y"] for r in batch])
        return 1.0 - zero_one_error(self.model, X, y)


def rows(X, y):
    return [{"x": X[i], "y": y[i]} for i in range(len(y))]


def test_fit_improves_logs_and_tracks_best(tmp_path):
    model, X, y = make_problem()
    data = rows(X, y)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=1, maximize=True, rule="raw", trajectory=tmp_path / "t.jsonl")
    cfg = TrainConfig(steps=120, batch_size=64, eval_every=20, progress=False)
    result = Trainer(None, opt, ToyAccuracy(model), data[:300], val_data=data[300:], config=cfg, out_dir=tmp_path).fit()
    assert result.start_value < 0.2 and result.best_value > 0.85
    assert result.best_step % 20 == 0 and 0 < result.best_step <= 120
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 120 and sum("val" in x for x in lines) == 6
    assert (tmp_path / "objective.png").stat().st_size > 1000
    # the best state is a trajectory position: replaying to it reproduces the best validation value
    fresh, _, _ = make_problem()
    bz.MeZO.replay(fresh, tmp_path / "t.jsonl", steps=result.best_step)
    assert abs((1 - zero_one_error(fresh, X[300:], y[300:])) - result.best_value) < 1e-9


def test_patience_stops_early():
    model, X, y = make_problem()
    data = rows(X, y)
    opt = bz.MeZO(model, lr=0.0, eps=0.05, seed=1, maximize=True)  # lr 0: validation never improves
    cfg = TrainConfig(steps=100, batch_size=32, eval_every=5, patience=2, progress=False)
    result = Trainer(None, opt, ToyAccuracy(model), data, val_data=data[:50], config=cfg).fit()
    assert result.steps_done == 10


def test_direction_mismatch_and_bad_config_are_refused():
    model, X, y = make_problem()
    with pytest.raises(ValueError, match="maximize"):
        Trainer(None, bz.MeZO(model, maximize=False), ToyAccuracy(model), rows(X, y))
    with pytest.raises(ValueError, match="train.steps"):
        TrainConfig(steps=0)


def test_a_run_shorter_than_eval_every_is_validated_after_its_last_step(tmp_path):
    """Trap: with validation only every eval_every steps, a 3-step run had best = step 0 (the base weights)."""
    model, X, y = make_problem()
    data = rows(X, y)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=1, maximize=True)
    cfg = TrainConfig(steps=3, batch_size=64, eval_every=25, progress=False)
    result = Trainer(None, opt, ToyAccuracy(model), data[:300], val_data=data[300:], config=cfg, out_dir=tmp_path).fit()
    assert [r["step"] for r in result.history if "val" in r] == [3]  # after the last (third) step
    assert result.final_value == 1 - zero_one_error(model, X[300:], y[300:])
    assert result.final_value > result.start_value  # three steps from the reversed classifier do help here
    assert result.best_step == 3 and result.best_value == result.final_value


class ToyCorrectness:
    """A pairwise objective on the toy problem: 'outputs' are per-row correctness flags, compared by count."""

    name = "toy_preference"

    def __init__(self, model):
        self.model = model

    def generate(self, lm, batch, seed=None):
        X = torch.stack([r["x"] for r in batch])
        y = torch.stack([r["y"] for r in batch])
        return ((self.model(X).squeeze(-1) > 0).float() == y).tolist()

    @staticmethod
    def compare(plus, minus):
        return max(-1.0, min(1.0, 10 * (sum(plus) - sum(minus)) / len(plus)))  # which side gets more rows right


def test_trainer_drives_the_pairwise_estimator(tmp_path):
    model, X, y = make_problem()
    data = rows(X, y)
    pref = ToyCorrectness(model)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=1, estimator="pairwise", compare=pref.compare)
    cfg = TrainConfig(steps=120, batch_size=64, eval_every=20, progress=False)
    result = Trainer(None, opt, pref, data[:300], val_objective=ToyAccuracy(model), val_data=data[300:], config=cfg,
                     out_dir=tmp_path).fit()
    assert result.start_value < 0.2 and result.best_value > 0.8
    rows_logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_logged) == 120 and any(r["objective"] != 0 for r in rows_logged)
    with pytest.raises(ValueError, match="pass a val_objective"):
        Trainer(None, opt, pref, data, val_data=data)
    with pytest.raises(ValueError, match="estimator='pairwise'"):
        Trainer(None, bz.MeZO(model, maximize=True), pref, data)
    with pytest.raises(ValueError, match="compares outputs"):
        Trainer(None, opt, ToyAccuracy(model), data)


def test_batches_depend_only_on_seed_and_step():
    data = [{"i": i} for i in range(100)]
    assert batch_for_step(data, 8, 0, 5) == batch_for_step(data, 8, 0, 5)
    assert batch_for_step(data, 8, 0, 5) != batch_for_step(data, 8, 0, 6)


def test_best_step_after_a_resume_counts_validations_from_before_it(tmp_path):
    """Resumed at step 4, the best validation (0.9 after step 2) and the start value come from the first part."""
    from blackbox_zo.running.best import best_across_resumes, run_start

    begun = run_start(tmp_path, 0, 0.5, [1.0, 0.0])  # a fresh run records where it started
    assert begun == run_start(tmp_path, 0, 0.5, [1.0, 0.0]) and begun.step == 0
    rows = [{"step": 0, "objective": 0.4}, {"step": 1, "objective": 0.5, "val": 0.9},
            {"step": 2, "objective": 0.6}, {"step": 3, "objective": 0.6, "val": 0.6},
            {"step": 7, "objective": 0.1, "val": 1.0}]  # a row past the resume point is not counted
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    resumed = run_start(tmp_path, 4, 0.6, [0.0, 0.0])
    assert (resumed.value, resumed.per_example, resumed.step) == (0.5, [1.0, 0.0], 0)
    best, earlier = best_across_resumes(tmp_path, True, resumed, 4, 0.6)
    # rows written before 0.3 counted from 0: read back renumbered by updates applied, as eval/export count
    assert (best.value, best.step, best.stale) == (0.9, 2, 1) and [r["step"] for r in earlier] == [1, 2, 3, 4]
    best_min, _ = best_across_resumes(tmp_path, False, resumed, 4, 0.6)  # minimising: the start 0.5 is best
    assert (best_min.value, best_min.step) == (0.5, 0)
    fresh, none = best_across_resumes(tmp_path / "elsewhere", True, run_start(None, 4, 0.6, None), 4, 0.6)
    assert (fresh.value, fresh.step, none) == (0.6, 4, [])  # no record: the resume point is the start
