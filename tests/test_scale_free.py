"""Plateau-proof, scale-free steps: the radius grows on ties and replays bitwise; objective units do not matter."""

import pytest
import torch

import blackbox_zo as bz
from tests.zo_toy import make_problem, zero_one_error


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def staircase(model, X, y):
    """0-1 error on 400 points, rounded down to steps of 0.05: flat at small radii, like accuracy on a batch."""
    return int(zero_one_error(model, X, y) * 20) / 20


def test_a_plateau_objective_moves_with_the_adaptive_radius_and_not_without():
    results = {}
    for grow in (1.0, 2.0):
        model, X, y = make_problem()
        opt = bz.MeZO(model, eps=1e-3, lr=1e-3, seed=0, radius_grow=grow, radius_max=64.0)
        moves = 0
        for _ in range(60):
            opt.step(lambda: staircase(model, X, y))
            moves += any(c != 0 for _, c in opt.last.update)
        results[grow] = (moves, zero_one_error(model, X, y), opt.engine.eps)
    assert results[1.0][0] <= 3 and results[1.0][1] > 0.9, f"without radius growth almost every step tied: {results}"
    assert results[2.0][0] > 20 and results[2.0][1] < 0.3, results
    assert results[2.0][2] > 1e-3  # the radius grew off the plateau


def test_adapted_radii_are_logged_and_replay_bitwise(tmp_path):
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    base = snapshot(model)
    opt = bz.MeZO(model, eps=1e-3, lr=1e-3, seed=3, radius_max=64.0, trajectory=log)
    for _ in range(30):
        opt.step(lambda: staircase(model, X, y))
    opt.close()
    records = bz.Trajectory(log).records
    radii = [r["eps"] for r in records]
    assert len(set(radii)) > 3 and max(radii) > 1e-3  # the radius really changed along the run
    fresh, _, _ = make_problem()
    fresh.load_state_dict(base)
    replayed = bz.MeZO.replay(fresh, log)
    assert replayed.engine.eps == opt.engine.eps
    assert all(torch.equal(v, snapshot(model)[k]) for k, v in snapshot(fresh).items())
    records[-1]["eps"] *= 2  # a log whose radii disagree with its values is refused
    fresh.load_state_dict(base)
    engine = bz.MeZO(fresh, eps=1e-3, lr=1e-3, seed=3, radius_max=64.0).engine
    with pytest.raises(bz.TrajectoryError, match="radius"):
        engine.replay(records)


@pytest.mark.parametrize("n", [1, 4])
def test_objective_scale_does_not_change_the_scale_free_trajectory(n):
    weights, updates = [], []
    for scale in (1.0, 1000.0):
        model, X, y = make_problem()
        opt = bz.MeZO(model, eps=0.05, lr=0.02, seed=4, n=n)
        steps = []
        for _ in range(40):
            opt.step(lambda: scale * zero_one_error(model, X, y))
            steps.append(opt.last.update)
        weights.append(snapshot(model))
        updates.append(steps)
    for a, b in zip(*updates):
        assert [s for s, _ in a] == [s for s, _ in b]
        assert all(abs(ca - cb) <= 1e-12 * max(1.0, abs(ca)) for (_, ca), (_, cb) in zip(a, b))
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6, rtol=0) for k in weights[0])
    if n == 1:  # one direction: the step is sign(f+ - f-) exactly, so the runs are bitwise equal
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_raw_rule_scales_with_the_objective():
    """MeZO's own rule stays available by name, and its step grows with the objective's units."""
    norms = []
    for scale in (1.0, 1000.0):
        model, X, y = make_problem()
        opt = bz.MeZO(model, eps=0.05, lr=1e-4, seed=4, rule="raw", radius_grow=1.0)
        opt.step(lambda: scale * zero_one_error(model, X, y))
        norms.append(max(abs(c) for _, c in opt.last.update))
    assert norms[1] == pytest.approx(1000 * norms[0], rel=1e-9)


def test_default_rule_improves_a_non_differentiable_objective_and_pairwise_ascends_by_default():
    """Default estimator, rule and radius control; eps and lr at this toy's weight scale (0.3, not an LM's 0.02)."""
    model, X, y = make_problem()
    start = zero_one_error(model, X, y)
    opt = bz.MeZO(model, maximize=True, eps=0.02, lr=0.01)
    for _ in range(150):
        opt.step(lambda: 1.0 - zero_one_error(model, X, y))
    assert start > 0.8 and zero_one_error(model, X, y) < 0.3
    model, X, y = make_problem()
    opt = bz.MeZO(model, estimator="pairwise", eps=0.02, lr=0.01, compare=lambda a, b: float((a < b) - (a > b)))
    for _ in range(150):
        opt.step(lambda: zero_one_error(model, X, y))
    assert zero_one_error(model, X, y) < 0.3


def test_a_tie_above_the_recent_median_is_a_ceiling_and_keeps_the_radius():
    at = bz.AskTell(None, eps=1e-3, maximize=True)  # log-only: values are told, nothing is evaluated
    for _ in range(5):
        at.tell_values([0.6, 0.4])  # the sides differ: the radius would shrink, but stays at its floor
    assert at.engine.eps == 1e-3
    at.tell_values([1.0, 1.0])  # every example right on both sides: a ceiling, not a plateau
    assert at.engine.eps == 1e-3
    at.tell_values([0.5, 0.5])  # a tie at the usual level: a plateau, so probe wider
    assert at.engine.eps == 2e-3
    lower = bz.AskTell(None, eps=1e-3, maximize=False)  # minimising: the ceiling is below the median
    for _ in range(5):
        lower.tell_values([0.6, 0.4])
    lower.tell_values([0.0, 0.0])
    assert lower.engine.eps == 1e-3


def logistic_loss(model, X, y) -> float:
    """A smooth objective: it never ties, so the tie rule alone only shrinks the radius to its floor."""
    return torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(-1), y).item()


def test_the_trend_window_grows_the_radius_of_a_smooth_objective_while_it_makes_progress():
    runs = {}
    for window in (None, 5):
        model, X, y = make_problem()
        opt = bz.MeZO(model, eps=1e-3, lr=3e-4, seed=1, radius_window=window, radius_grow=1.5,
                      radius_shrink=2 / 3, radius_max=1000.0)
        for _ in range(100):
            opt.step(lambda: logistic_loss(model, X, y))
        runs[window] = (opt.engine.eps, logistic_loss(model, X, y))
    start = logistic_loss(make_problem()[0], *make_problem()[1:])
    assert runs[None][0] == 1e-3, runs  # without the window: stuck at the floor, steps of 3e-4
    assert runs[5][0] > 1e-2, runs  # with it: the radius (and the step) grew by more than 10x
    assert runs[5][1] < runs[None][1] - 0.1 and runs[None][1] > start - 0.1, (start, runs)


def test_the_trend_window_grows_on_progress_and_shrinks_after_a_window_that_lost_ground():
    at = bz.AskTell(None, eps=1e-3, maximize=True, radius_window=2, radius_grow=2.0, radius_shrink=0.5)
    told = [[0.10, 0.12], [0.11, 0.13], [0.20, 0.22], [0.21, 0.23]]  # the second window beat the first
    radii = []
    for values in told + [[0.10, 0.12], [0.09, 0.11]]:  # the third lost ground against the second
        at.tell_values(values)
        radii.append(at.engine.eps)
    assert radii == [1e-3, 1e-3, 1e-3, 2e-3, 2e-3, 1e-3]


def test_trend_radii_replay_bitwise_on_resume(tmp_path):
    log = tmp_path / "run.jsonl"
    spec = dict(eps=1e-3, lr=3e-4, seed=2, radius_window=4, radius_grow=1.5, radius_shrink=2 / 3, radius_max=100.0)
    model, X, y = make_problem()
    base = snapshot(model)
    opt = bz.MeZO(model, trajectory=log, **spec)
    for _ in range(40):
        opt.step(lambda: logistic_loss(model, X, y))
    opt.close()
    assert len({r["eps"] for r in bz.Trajectory(log).records}) > 3  # the radius moved
    resumed, _, _ = make_problem()
    resumed.load_state_dict(base)
    again = bz.MeZO(resumed, trajectory=log, resume=True, **spec)  # replays the 40 logged steps
    assert again.engine.eps == opt.engine.eps
    assert all(torch.equal(v, snapshot(model)[k]) for k, v in snapshot(resumed).items())


def test_a_window_shorter_than_two_steps_is_named():
    with pytest.raises(ValueError, match="radius_window"):
        bz.Spec(radius_window=1)


def test_pairwise_keeps_its_radius_by_default_because_a_split_vote_reads_as_a_tie():
    """Trap: preferences +1 and -1 over a batch average to 0, the value of a true tie. With the scalar default
    (radius_grow 2) split votes doubled eps every step; for 'pairwise' the default resolves to a fixed radius."""
    assert bz.Spec().radius_grow == 2.0
    assert bz.Spec(estimator="pairwise").radius_grow == 1.0
    assert bz.Spec(estimator="pairwise", radius_grow=2.0).radius_grow == 2.0  # an explicit value is kept
    assert bz.Spec.from_dict(bz.Spec(estimator="pairwise").to_dict()).radius_grow == 1.0  # logs hold the value
    split_votes = [0.0, 0.0]  # each direction: one prompt preferred +, one preferred -
    fixed = bz.AskTell(None, estimator="pairwise", n=2, eps=1e-3, compare=lambda a, b: 0.0)
    grown = bz.AskTell(None, estimator="pairwise", n=2, eps=1e-3, compare=lambda a, b: 0.0, radius_grow=2.0)
    for _ in range(3):
        fixed.tell_values(split_votes)
        grown.tell_values(split_votes)
    assert fixed.engine.eps == 1e-3
    assert grown.engine.eps == 8e-3
