"""Every transform of step/transforms.py and every schedule of step/spec.py against values computed by hand.

Small inputs, numbers worked out in the comments, so a changed sign, a dropped bias correction or an
off-by-one in a warm-up fails here rather than as a slightly worse benchmark.
"""

import math

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.step.engine import Engine
from blackbox_zo.step.spec import Schedule, Spec
from blackbox_zo.step.transforms import (
    DenseStep,
    StepContext,
    clip,
    dense_adam,
    dense_momentum,
    follow_radius,
    make_optimizer,
    momentum_window,
    normalize,
    scale_by_lr,
    sign,
)

CTX = StepContext(0, 0.1)


def run(transform, g, ctx=CTX):
    return transform.update(g, transform.init(), ctx)


def approx(pairs):
    return [(k, pytest.approx(c, rel=1e-12, abs=1e-15)) for k, c in pairs]


class FixedDirections:
    """A dense-state backend with hand-chosen directions: z(seed) = Z[seed], one tensor 'w'."""

    def __init__(self, theta, directions):
        self.theta = torch.tensor(theta, dtype=torch.float64)
        self.z = {s: torch.tensor(v, dtype=torch.float64) for s, v in directions.items()}

    def map_dense(self, pairs, fn):
        g = sum(c * self.z[s] for s, c in pairs)
        fn("w", self.theta, g)


def dense_steps(transform, backend, grads, lr):
    state = transform.init()
    for t, g in enumerate(grads):
        step, state = transform.update(g, state, StepContext(t, lr))
        assert isinstance(step, DenseStep)
        step.apply(backend)
    return backend.theta.tolist()


# --- coefficient transforms ------------------------------------------------------------------------
def test_normalize_divides_by_n_times_rms():
    # rms(3, -4) = sqrt(12.5) = 3.5355; c / (2 rms) = 0.42426, -0.56569
    out, _ = run(normalize(), [(1, 3.0), (2, -4.0)])
    assert out == approx([(1, 3 / (2 * math.sqrt(12.5))), (2, -4 / (2 * math.sqrt(12.5)))])
    assert run(normalize(), [(7, -0.02)])[0] == [(7, -1.0)]  # one direction: its sign
    assert run(normalize(), [(7, 0.0)])[0] == [(7, 0.0)]  # a tie: no step, not a division by zero


def test_follow_radius_scales_by_eps_t_over_eps():
    assert run(follow_radius(), [(1, 0.5), (2, -2.0)], StepContext(0, 0.1, radius=2.5))[0] == [(1, 1.25), (2, -5.0)]


def test_sign_keeps_only_the_sign_and_zero_for_a_tie():
    assert run(sign(), [(1, 0.3), (2, -1e-9), (3, 0.0)])[0] == [(1, 1.0), (2, -1.0), (3, 0.0)]


def test_clip_bounds_each_coefficient():
    assert run(clip(0.5), [(1, 2.0), (2, -0.7), (3, 0.1)])[0] == [(1, 0.5), (2, -0.5), (3, 0.1)]


def test_scale_by_lr_is_a_descent_step():
    assert run(scale_by_lr(), [(1, 2.0), (2, -1.0)], StepContext(3, 0.1))[0] == approx([(1, -0.2), (2, 0.1)])


def test_windowed_momentum_replays_the_last_window_seeds_with_beta_powers():
    t = momentum_window(beta=0.5, window=2)
    state = t.init()
    out, state = t.update([(1, 1.0)], state, StepContext(0, 0.1))
    assert out == [(1, 1.0)]
    out, state = t.update([(2, 2.0)], state, StepContext(1, 0.1))
    assert out == [(2, 2.0), (1, 0.5)]  # m_1 = g_1 + 0.5 g_0
    out, state = t.update([(3, 4.0)], state, StepContext(2, 0.1))
    assert out == [(3, 4.0), (2, 1.0)]  # g_0 left the window of 2


# --- dense rules -----------------------------------------------------------------------------------
def test_dense_momentum_by_hand():
    # beta 0.5, lr 0.1, theta [1, 1]; g0 = [1, -2]: m = [1, -2], theta = [0.9, 1.2]
    # g1 = [2, 0]: m = 0.5 [1, -2] + [2, 0] = [2.5, -1], theta = [0.9 - 0.25, 1.2 + 0.1] = [0.65, 1.3]
    backend = FixedDirections([1.0, 1.0], {1: [1.0, -2.0], 2: [1.0, 0.0]})
    theta = dense_steps(dense_momentum(0.5), backend, [[(1, 1.0)], [(2, 2.0)]], lr=0.1)
    assert theta == pytest.approx([0.65, 1.3], abs=1e-12)


def test_dense_adam_bias_correction_by_hand():
    # b1 0.9, b2 0.999, lr 0.1. Step 1, g = [2, -0.5]: m = [0.2, -0.05], v = [0.004, 0.00025];
    # m_hat = m / 0.1 = g, v_hat = v / 0.001 = g^2, so the step is -lr sign(g): theta = [0.9, 1.1]
    # (without bias correction it would be -0.1 * 0.2 / sqrt(0.004) = -0.316).
    # Step 2, g = [2, 0.5]: m = [0.38, 0.005], v = [0.007996, 0.00049975]; bc1 = 0.19, bc2 = 0.001999;
    # m_hat = [2, 0.026316], sqrt(v_hat) = [2, 0.5]: theta = [0.8, 1.1 - 0.0052632]
    backend = FixedDirections([1.0, 1.0], {1: [2.0, -0.5], 2: [2.0, 0.5]})
    t = dense_adam(0.9, 0.999, 1e-8)
    assert dense_steps(t, backend, [[(1, 1.0)]], lr=0.1) == pytest.approx([0.9, 1.1], abs=1e-7)
    backend = FixedDirections([1.0, 1.0], {1: [2.0, -0.5], 2: [2.0, 0.5]})
    theta = dense_steps(t, backend, [[(1, 1.0)], [(2, 1.0)]], lr=0.1)
    assert theta == pytest.approx([0.8, 1.1 - 0.1 * (0.005 / 0.19) / 0.5], abs=1e-7)


def test_windowed_momentum_equals_dense_momentum_while_the_window_holds_every_step():
    lin = torch.nn.Linear(6, 3)
    start = {k: v.detach().clone() for k, v in lin.state_dict().items()}
    grads = [[(11, 0.3)], [(12, -0.2)], [(13, 0.5)]]
    finals = []
    for transform in (dense_momentum(0.9), momentum_window(0.9, 8)):
        lin.load_state_dict(start)
        space, state = bz.ParamSpace(lin), transform.init()
        for t, g in enumerate(grads):
            update, state = transform.update(g, state, StepContext(t, 0.1))
            if isinstance(update, DenseStep):
                update.apply(space)
            else:
                space.apply(scale_by_lr().update(update, None, StepContext(t, 0.1))[0])
        finals.append({k: v.detach().clone() for k, v in lin.state_dict().items()})
    for k in start:
        assert not torch.equal(finals[0][k], start[k])
        torch.testing.assert_close(finals[0][k], finals[1][k], atol=1e-6, rtol=0)


# --- the chain a Spec names --------------------------------------------------------------------------
def test_chain_clips_then_normalizes_then_follows_the_radius_then_scales():
    # clip 0.5: [0.5, 0.25]; rms = sqrt(0.15625) = 0.39528; / (2 rms): [0.63246, 0.31623];
    # radius 2: [1.26491, 0.63246]; lr 0.1: [-0.126491, -0.063246]
    opt = make_optimizer(Spec(clip_value=0.5))
    out, _ = opt.update([(1, 2.0), (2, 0.25)], opt.init(), StepContext(0, 0.1, radius=2.0))
    rms = math.sqrt((0.5**2 + 0.25**2) / 2)
    assert out == approx([(1, -0.1 * 2 * 0.5 / (2 * rms)), (2, -0.1 * 2 * 0.25 / (2 * rms))])


def test_raw_rule_skips_normalization_and_radius():
    opt = make_optimizer(Spec(rule="raw", clip_value=0.5))
    assert opt.update([(1, 2.0), (2, 0.25)], opt.init(), StepContext(0, 0.1, radius=2.0))[0] == approx([(1, -0.05), (2, -0.025)])


def test_sign_optimizer_under_the_raw_rule():
    opt = make_optimizer(Spec(rule="raw", optimizer="sign"))
    assert opt.update([(1, 30.0), (2, -1e-6)], opt.init(), StepContext(0, 0.1))[0] == approx([(1, -0.1), (2, 0.1)])


def one_update(spec, plus, minus):
    """The update pairs of one log-only engine step whose two sides measured `plus` and `minus`."""
    return Engine(None, spec).finish([plus, minus], []).update


def test_normalized_rule_is_scale_free_and_raw_rule_is_the_projected_gradient():
    # raw: g = (3 - 1) / (2 * 0.01) = 100, update = -lr g = -0.1; normalized: -lr sign(g) = -1e-3
    raw, norm = Spec(rule="raw", eps=0.01, lr=1e-3), Spec(rule="normalized", eps=0.01, lr=1e-3)
    (_, c_raw), = one_update(raw, 3.0, 1.0)
    (_, c_norm), = one_update(norm, 3.0, 1.0)
    assert c_raw == pytest.approx(-0.1) and c_norm == pytest.approx(-1e-3)
    assert one_update(norm, 3000.0, 1000.0)[0][1] == pytest.approx(c_norm)  # objective x 1000: same step
    assert one_update(raw, 3000.0, 1000.0)[0][1] == pytest.approx(1000 * c_raw)
    assert one_update(Spec(rule="normalized", eps=0.01, lr=1e-3, maximize=True), 3.0, 1.0)[0][1] == pytest.approx(1e-3)


# --- weight decay ------------------------------------------------------------------------------------
def test_decay_scales_matrices_and_skips_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bz.ParamSpace(model).decay(0.9)
    after = model.state_dict()
    torch.testing.assert_close(after["0.weight"], 0.9 * before["0.weight"])
    for k in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[k], before[k]), k


def test_engine_decays_by_one_minus_scheduled_lr_times_weight_decay():
    # a constant objective ties, so the step is decay alone: step 0 of a 4-step warm-up has lr 0.5 / 4,
    # so theta <- (1 - 0.125 * 0.2) theta = 0.975 theta for the matrix; the bias stays
    lin = torch.nn.Linear(5, 2)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    opt = bz.MeZO(lin, lr=0.5, weight_decay=0.2, schedule={"name": "constant", "warmup_steps": 4})
    opt.step(lambda: 1.0)
    assert opt.last.lr == 0.125
    torch.testing.assert_close(lin.weight.detach(), 0.975 * w0, atol=1e-6, rtol=0)
    torch.testing.assert_close(lin.bias.detach(), b0, atol=1e-6, rtol=0)


def test_decay_of_low_precision_tensors_goes_through_the_float32_masters():
    lin = torch.nn.Linear(8, 8).to(torch.bfloat16)
    space = bz.ParamSpace(lin)
    master0 = space.masters["weight"].clone()
    space.decay(0.5)
    torch.testing.assert_close(space.masters["weight"], 0.5 * master0)
    assert torch.equal(lin.weight.detach(), space.masters["weight"].to(torch.bfloat16))


# --- schedules ---------------------------------------------------------------------------------------
def test_constant_schedule_with_linear_warm_up():
    s = Schedule(warmup_steps=4)
    assert [s.lr(0.1, t) for t in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert [Schedule().lr(0.1, t) for t in (0, 7, 10**6)] == [0.1, 0.1, 0.1]


def test_linear_schedule_after_warm_up():
    # warm-up 2 steps, then 10 steps from 0.11 to 0.01: step 7 is half-way (0.06), step 12 the end, then it stays
    s = Schedule("linear", total_steps=12, warmup_steps=2, final_lr=0.01)
    assert [s.lr(0.11, t) for t in (0, 1, 2, 7, 12, 50)] == pytest.approx([0.055, 0.11, 0.11, 0.06, 0.01, 0.01])


def test_cosine_schedule_by_hand():
    s = Schedule("cosine", total_steps=10)
    # frac 0.2: 0.5 (1 + cos(0.2 pi)) = 0.5 (1 + 0.809017) = 0.9045085
    assert [s.lr(1.0, t) for t in (0, 2, 5, 10, 11)] == pytest.approx([1.0, 0.9045085, 0.5, 0.0, 0.0], abs=1e-7)
    w = Schedule("cosine", total_steps=12, warmup_steps=2, final_lr=0.01)
    assert [w.lr(0.11, t) for t in (0, 2, 7, 12)] == pytest.approx([0.055, 0.11, 0.06, 0.01])


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="cosine"), "needs total_steps"),
    (dict(name="linear", total_steps=3, warmup_steps=3), "needs total_steps"),
    (dict(name="step"), "unknown schedule"),
    (dict(warmup_steps=-1), "warmup_steps"),
])
def test_bad_schedules_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


def test_spec_builds_its_schedule_from_plain_data():
    assert Spec(schedule={"name": "linear", "total_steps": 5}).schedule == Schedule("linear", total_steps=5)
    assert Spec(schedule="constant").schedule == Schedule()
    assert Spec.from_dict(Spec(betas=[0.8, 0.9]).to_dict()) == Spec(betas=(0.8, 0.9))
