"""The engine: unbiased estimates, optimizers that improve a non-differentiable objective, faults, replay."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.weights.noise import noise_slice
from tests.zo_toy import make_problem, zero_one_error


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_perturb_restore_round_trip_within_float32_rounding():
    model = torch.nn.Linear(300, 200)
    before = snapshot(model)
    space = bz.ParamSpace(model)
    space.apply([(42, 1e-3)])
    moved = snapshot(model)
    for k, v in moved.items():  # it really moved: |1e-3 z| is above a float32 step at |w| < 0.06 but for the rare z ~ 0
        assert (v != before[k]).float().mean() > 0.99, k
    space.apply([(42, -2e-3)])
    space.apply([(42, 1e-3)])
    for k, v in snapshot(model).items():  # and came back, up to float32 rounding (not bitwise: x + a - 2a + a)
        assert torch.allclose(v, before[k], atol=1e-7, rtol=0), k


def test_spsa_estimate_is_unbiased_on_a_quadratic():
    d = 16
    theta = torch.nn.Parameter(torch.linspace(-1, 1, d))
    target = torch.linspace(0.5, -0.5, d)
    true_grad = (theta.detach() - target).clone()  # grad of 0.5 ||theta - target||^2
    opt = bz.MeZO([theta], lr=0.0, eps=1e-3, seed=0)
    total = torch.zeros(d)
    steps = 3000
    for _ in range(steps):
        opt.step(lambda: 0.5 * float(((theta - target) ** 2).sum()))
        for seed, c in opt.last.grad:
            total += c * noise_slice(seed, "param.0", d, 0, d)
    mean = total / steps
    rel = float((mean - true_grad).norm() / true_grad.norm())
    assert rel < 0.15, f"mean SPSA estimate is {rel:.3f} (relative) away from the true gradient"


OPTIMIZERS = [
    dict(optimizer="sgd"),
    dict(optimizer="sign", lr=0.02),
    dict(optimizer="momentum", lr=0.01),
    dict(optimizer="momentum", lr=0.01, window=8),
    dict(optimizer="adam", lr=0.02),
    dict(optimizer="conservative"),
    dict(optimizer="sgd", estimator="one_sided"),
    dict(optimizer="sgd", estimator="spsa", n=4),
    dict(optimizer="sgd", estimator="population", n=4, lr=0.005),
    dict(optimizer="sgd", weight_decay=0.01, schedule={"name": "cosine", "total_steps": 300, "warmup_steps": 10}),
]


@pytest.mark.parametrize("kw", OPTIMIZERS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_each_optimizer_reduces_zero_one_error(kw):
    model, X, y = make_problem()
    start = zero_one_error(model, X, y)
    kw = {"lr": 0.05, **kw}
    opt = bz.MeZO(model, eps=0.05, seed=1, **kw)
    for _ in range(300):
        opt.step(lambda: zero_one_error(model, X, y))
    end = zero_one_error(model, X, y)
    assert start > 0.8 and end < 0.15, f"{kw}: 0-1 error {start:.2f} -> {end:.2f}"


def test_pairwise_estimator_climbs_with_preferences_only():
    model, X, y = make_problem()
    start = zero_one_error(model, X, y)
    # the closure returns an output; compare() only says which side is better
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=2, estimator="pairwise",
                  compare=lambda a, b: float((a < b) - (a > b)))
    for _ in range(300):
        opt.step(lambda: zero_one_error(model, X, y))
    assert zero_one_error(model, X, y) < min(0.15, start)


def test_same_seed_is_bitwise_the_same_run():
    runs = []
    for _ in range(2):
        model, X, y = make_problem()
        opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=7, optimizer="adam")
        for _ in range(20):
            opt.step(lambda: zero_one_error(model, X, y))
        runs.append(snapshot(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "conservative"])
def test_replay_rebuilds_live_weights_bitwise(tmp_path, optimizer):
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    base = snapshot(model)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=4, optimizer=optimizer, weight_decay=0.01, trajectory=log)
    for _ in range(25):
        opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    fresh, _, _ = make_problem()
    fresh.load_state_dict(base)
    bz.MeZO.replay(fresh, log)
    live, rebuilt = snapshot(model), snapshot(fresh)
    assert all(torch.equal(live[k], rebuilt[k]) for k in live)
    assert log.stat().st_size < 25 * 400  # a log of scalars, not weights


@pytest.mark.parametrize("noise", ["gaussian", "lowrank"])  # lowrank: a batched space (points applied at use time)
def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path, noise):
    steps = 60
    ref = str(tmp_path / "ref.jsonl")
    subprocess.run([sys.executable, "tests/zo_toy.py", ref, str(steps), "0", noise], check=True)
    log = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "tests/zo_toy.py", str(log), str(steps), "0.05", noise])
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 15):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = log.read_text().count("\n") - 1
    assert 10 <= done < steps, f"killed after {done} steps"
    subprocess.run([sys.executable, "tests/zo_toy.py", str(log), str(steps), "0", noise], check=True)
    assert ('"evaluate":"batched"' in log.read_text()) == (noise == "lowrank")
    a, b = torch.load(ref + ".final.pt"), torch.load(str(log) + ".final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_base_weights_and_other_config(tmp_path):
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=4, trajectory=log)
    opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    with pytest.raises(bz.TrajectoryError, match="already holds 1 steps"):
        bz.MeZO(make_problem()[0], lr=0.05, eps=0.05, seed=4, trajectory=log)
    with pytest.raises(bz.TrajectoryError, match="not the base weights"):
        bz.MeZO(model, lr=0.05, eps=0.05, seed=4, trajectory=log, resume=True)  # already tuned: not the base
    with pytest.raises(bz.TrajectoryError, match="seed=4"):
        bz.MeZO(make_problem()[0], lr=0.05, eps=0.05, seed=5, trajectory=log, resume=True)


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=4, trajectory=log)
    for _ in range(3):
        opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    with open(log, "a") as fh:
        fh.write('{"step": 3, "valu')  # killed mid-write
    resumed = bz.MeZO(make_problem()[0], lr=0.05, eps=0.05, seed=4, trajectory=log, resume=True)
    assert resumed.step_count == 3


class Boom(Exception):
    pass


@pytest.mark.parametrize("fail_at", [0, 1])
def test_objective_that_raises_leaves_pre_step_weights(fail_at):
    model, X, y = make_problem()
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=1)
    opt.step(lambda: zero_one_error(model, X, y))
    before = snapshot(model)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) > fail_at:
            raise Boom("reward server down")
        return zero_one_error(model, X, y)

    with pytest.raises(bz.ObjectiveError, match="Boom: reward server down.*point 1|Boom: reward server down.*point 0"):
        opt.step(closure)
    after = snapshot(model)
    assert all(torch.allclose(after[k], before[k], atol=1e-7, rtol=0) for k in before)
    assert opt.step_count == 1  # the failed step did not count


def test_keyboard_interrupt_restores_weights():
    model, X, y = make_problem()
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=1)
    before = snapshot(model)

    def closure():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    assert all(torch.allclose(snapshot(model)[k], before[k], atol=1e-7, rtol=0) for k in before)


@pytest.mark.parametrize("bad", [None, "0.5", [1.0, 2.0], torch.ones(3)])
def test_non_numeric_objective_is_named(bad):
    model, X, y = make_problem()
    before = snapshot(model)
    opt = bz.MeZO(model, lr=0.05, eps=0.05)
    with pytest.raises(bz.ObjectiveError, match="expected one number|expected a number"):
        opt.step(lambda: bad)
    assert all(torch.allclose(snapshot(model)[k], before[k], atol=1e-7, rtol=0) for k in before)


def test_non_finite_values_skip_the_update_and_are_counted():
    model, X, y = make_problem()
    before = snapshot(model)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, max_nonfinite=3)
    with pytest.warns(UserWarning, match="non-finite"):
        opt.step(lambda: float("nan"))
    assert opt.nonfinite_steps == 1
    assert all(torch.allclose(snapshot(model)[k], before[k], atol=1e-7, rtol=0) for k in before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.step(lambda: float("inf"))
        with pytest.raises(bz.NonFiniteObjective, match="3 consecutive"):
            opt.step(lambda: float("nan"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps=0.0), "eps must be"),
        (dict(eps=-1e-3), "eps must be"),
        (dict(optimizer="lion"), "unknown optimizer 'lion'"),
        (dict(estimator="cma"), "unknown estimator 'cma'"),
        (dict(include=["nothing_matches"]), "empty parameter set"),
        (dict(schedule={"name": "cosine"}), "needs total_steps"),
        (dict(estimator="pairwise"), "needs compare="),
        (dict(noise="uniform"), "noise must be one of"),
        (dict(lr=float("nan")), "lr must be"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bz.MeZO(torch.nn.Linear(3, 1), **kwargs)


def test_blockwise_moves_one_block_per_direction():
    model = torch.nn.Sequential()
    model.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)])
    space = bz.ParamSpace(model, blockwise=True)
    assert space.blocks == ["layer.0", "layer.1", "layer.2"]
    before = snapshot(model)
    space.apply([(123, 0.1)])
    changed = {k.split(".")[1] for k, v in snapshot(model).items() if not torch.equal(v, before[k])}
    assert changed == {space.block_for_seed(123).split(".")[1]}


def test_sparse_mask_perturbs_only_small_magnitude_weights():
    lin = torch.nn.Linear(50, 40)
    space = bz.ParamSpace(lin, mask_density=0.2)
    w0 = lin.weight.detach().clone()
    space.apply([(5, 0.1)])
    moved = lin.weight.detach() != w0
    assert abs(moved.float().mean().item() - 0.2) < 0.02
    assert w0[moved].abs().max() <= w0[~moved].abs().min()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_precision_check_float32_and_bfloat16(dtype):
    from blackbox_zo.weights.precision import check_precision

    lin = torch.nn.Linear(256, 256).to(dtype)
    torch.nn.init.normal_(lin.weight, std=0.02)
    space = bz.ParamSpace(lin)
    assert space.master_weights is (dtype != torch.float32)  # float32 masters by default for low precision
    exact = check_precision(space)
    assert exact["drift_rms"] < 1e-8 and abs(exact["landed_fraction"] - 1) < 1e-3
    space.apply([(3, 1e-3)])  # the model holds the rounding of the float32 masters, nothing else
    assert all(torch.equal(p, space.masters.get(n, p).to(dtype)) for n, p in space.tensors.items())


def test_every_log_records_how_the_run_evaluated_and_old_logs_resume(tmp_path):
    """evaluate is in every header (inplace too); a log written before the key existed resumes as in place."""
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    base = snapshot(model)
    opt = bz.MeZO(model, lr=0.05, eps=0.05, seed=4, trajectory=log)
    opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    header, *records = [json.loads(line) for line in log.read_text().splitlines()]
    assert header["config"]["evaluate"] == "inplace"
    del header["config"]["evaluate"]  # as logs before this change were written
    log.write_text("".join(json.dumps(line) + "\n" for line in [header, *records]))
    fresh = make_problem()[0]
    fresh.load_state_dict(base)
    again = bz.MeZO(fresh, lr=0.05, eps=0.05, seed=4, trajectory=log, resume=True)
    assert again.step_count == 1 and all(torch.equal(a, b) for a, b in zip(snapshot(fresh).values(), snapshot(model).values()))


def test_evaluate_is_resolved_in_one_function():
    from blackbox_zo.weights.backend import resolve_evaluate

    assert resolve_evaluate("auto", False, lambda: None) == "inplace"  # elementwise noise walks
    assert resolve_evaluate("auto", True, lambda: None) == "batched"  # low-rank / small spaces batch
    assert resolve_evaluate("auto", True, lambda: "masked") == "inplace"  # unless something blocks it
    assert resolve_evaluate("inplace", True, lambda: 1 / 0) == "inplace"  # the obstacle is asked only when needed
    with pytest.raises(ValueError, match="not possible here: masked"):
        resolve_evaluate("batched", False, lambda: "masked")
    with pytest.raises(ValueError, match="evaluate must be one of"):
        resolve_evaluate("fast", False, lambda: None)
    model = torch.nn.Linear(4, 3)
    assert bz.ParamSpace(model, noise="lowrank", module=model).evaluate_mode == "batched"
    assert bz.ParamSpace(model, module=model, small=True).evaluate_mode == "batched"
    assert bz.ParamSpace(model, module=model, small=True, blockwise=True).evaluate_mode == "inplace"
    assert bz.ParamSpace(model).evaluate_mode == "inplace"


def test_a_users_transform_chain_is_logged_and_replay_rebuilds_it(tmp_path):
    from blackbox_zo.step import transforms as tx

    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    base = snapshot(model)
    chain = bz.chain(tx.clip(2.0), tx.sign(), tx.momentum_window(0.5, 3), tx.scale_by_lr())
    opt = bz.MeZO(model, lr=0.02, eps=0.05, seed=4, transform=chain, trajectory=log)
    for _ in range(12):
        opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    logged = json.loads(log.read_text().splitlines()[0])["config"]["transform"]
    assert logged == {"name": "chain", "transforms": [{"name": "clip", "max_abs": 2.0}, {"name": "sign"},
                                                      {"name": "momentum_window", "beta": 0.5, "window": 3},
                                                      {"name": "scale_by_lr"}]}
    fresh = make_problem()[0]
    fresh.load_state_dict(base)
    bz.MeZO.replay(fresh, log)
    assert all(torch.equal(a, b) for a, b in zip(snapshot(fresh).values(), snapshot(model).values()))
    default = make_problem()[0]  # the Spec's own chain (normalize, sgd) moves the weights elsewhere
    default.load_state_dict(base)
    plain = bz.MeZO(default, lr=0.02, eps=0.05, seed=4)
    for _ in range(12):
        plain.step(lambda: zero_one_error(default, X, y))
    assert not all(torch.equal(a, b) for a, b in zip(snapshot(default).values(), snapshot(model).values()))


def test_a_hand_made_transform_runs_but_cannot_be_logged(tmp_path):
    from blackbox_zo.step.transforms import Transform

    model, X, y = make_problem()
    halve = Transform(lambda: None, lambda g, s, ctx: ([(k, -ctx.lr * c / 2) for k, c in g], s))
    bz.MeZO(model, lr=0.05, eps=0.05, transform=halve).step(lambda: zero_one_error(model, X, y))
    with pytest.raises(ValueError, match="hand-made Transform cannot be logged"):
        bz.MeZO(model, transform=halve, trajectory=tmp_path / "run.jsonl")


def test_a_dense_chain_needs_an_in_process_backend():
    from blackbox_zo.step import transforms as tx

    with pytest.raises(ValueError, match="the transform keeps dense state"):
        bz.AskTell(None, transform=bz.chain(tx.normalize(), tx.dense_adam(0.9, 0.999, 1e-8)))
