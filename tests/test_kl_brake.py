"""The KL brake (objectives.kl): reward - beta x KL-hat against pi_0, for rewards, judges and BestOfN.

Real parts: a tiny random Llama with real steering vectors; pi_0 is `UntunedLM` (the space switched off) and,
for the hand computation, an untouched second copy read token by token with a plain forward.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from blackbox_zo import steering_space
from blackbox_zo.lm import TransformersLM, UntunedLM
from blackbox_zo.lm.tokens import split_context_target
from objectives import BestOfN, CallableJudge, Generation, PairwiseObjective, Reward
from objectives.kl import braked_verdict, kl_hat
from tests.conftest import make_tiny_llama

ROWS = [{"prompt": p} for p in ("Tell me about your day.", "What is a good breakfast?", "Why do birds sing?")]
GEN = Generation(max_new_tokens=6)


def length_reward(prompts, completions, **_):
    return [float(len(c)) for c in completions]


def steered(tokenizer):
    """(lm, pi_0 as UntunedLM, pi_0 as an untouched copy, space), the steering vectors still at their start."""
    model, tok = make_tiny_llama(tokenizer)
    base = copy.deepcopy(model)
    model, space = steering_space(model, tok, layers=[0])
    lm = TransformersLM(model, tok, batch_size=4)
    return lm, UntunedLM(lm, space), base, space


def move(space, scale=3.0):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in space.tensors.values():
            t.add_(torch.randn(t.shape, generator=gen) * scale)


def hand_logprobs(model, tok, context: str, answer: str) -> list[float]:
    """log p(y_t | x, y_<t) of each answer token from one unpadded forward and a log-softmax."""
    ctx, target = split_context_target(tok, context, answer)
    ids = torch.tensor([ctx + target])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return [logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(target)]


def hand_k3(model, base, tok, context: str, answer: str) -> float:
    """sum_t exp(r_t) - r_t - 1 with r_t = log pi_0(y_t) - log pi_theta(y_t), written out as TRL writes it."""
    tuned, untuned = hand_logprobs(model, tok, context, answer), hand_logprobs(base, tok, context, answer)
    return sum(math.exp(b - a) - (b - a) - 1 for a, b in zip(tuned, untuned))


def test_kl_hat_is_zero_at_the_start_and_the_value_is_the_reward(tokenizer):
    lm, untuned, _, _ = steered(tokenizer)
    braked = Reward(length_reward, generation=GEN, kl=0.5, reference=untuned).evaluate(lm, ROWS, seed=0)
    plain = Reward(length_reward, generation=GEN).evaluate(lm, ROWS, seed=0)
    assert braked.info["kl"] == 0.0  # tuned == untuned: every log-ratio is exactly 0
    assert braked.value == plain.value and braked.per_example == plain.per_example


def test_kl_hat_equals_a_hand_computation_and_brakes_the_reward(tokenizer):
    lm, untuned, base, space = steered(tokenizer)
    move(space)
    answers = GEN.run(lm, [r["prompt"] for r in ROWS], 0)
    got = kl_hat(lm, untuned, [r["prompt"] for r in ROWS], answers)
    tok = lm.tokenizer
    hand = [hand_k3(lm.model, base, tok, lm.prompt_text(r["prompt"]), a) for r, a in zip(ROWS, answers)]
    assert any(h > 0.1 for h in hand)  # the steering moved the model: the check can fail
    assert got == pytest.approx(hand, rel=1e-3, abs=1e-4)
    k1 = kl_hat(lm, untuned, [r["prompt"] for r in ROWS], answers, estimator="k1")
    hand_k1 = [sum(hand_logprobs(lm.model, tok, lm.prompt_text(r["prompt"]), a))
               - sum(hand_logprobs(base, tok, lm.prompt_text(r["prompt"]), a)) for r, a in zip(ROWS, answers)]
    assert k1 == pytest.approx(hand_k1, abs=1e-3)
    beta = 0.25
    score = Reward(length_reward, generation=GEN, kl=beta, reference=untuned).evaluate(lm, ROWS, seed=0)
    rewards = length_reward(None, answers)
    assert score.per_example == pytest.approx([r - beta * k for r, k in zip(rewards, got)])
    assert score.info["reward"] == pytest.approx(sum(rewards) / 3) and score.info["kl"] == pytest.approx(sum(got) / 3)
    assert score.info["answers"] == answers  # the Score carries its text for the run's samples


def test_kl_without_a_reference_names_the_objective(tokenizer):
    lm, _, _, _ = steered(tokenizer)
    with pytest.raises(ValueError, match="length_reward: kl=0.1 needs reference="):
        Reward(length_reward, generation=GEN, kl=0.1).evaluate(lm, ROWS, seed=0)
    with pytest.raises(ValueError, match="kl .* must be a finite number >= 0"):
        Reward(length_reward, kl=-1.0)


@pytest.mark.parametrize("verdict,d_a,d_b,beta,expected", [
    (1, 0.0, 0.0, 1.0, 1),  # no drift difference: the judge's verdict
    (1, 0.4, 0.0, 1.0, 1),  # the winner drifted 0.4 nats more: a win below the 0.5/beta margin stays
    (1, 1.0, 0.0, 1.0, 0),  # 1 nat more: a tie
    (1, 2.0, 0.0, 1.0, -1),  # 2 nats more: lost
    (0, 0.0, 0.6, 1.0, 1),  # a tie goes to the side that drifted less
    (-1, 5.0, 0.0, 0.0, -1),  # beta 0: untouched
])
def test_pairwise_verdict_pays_a_margin_on_the_kl_difference(verdict, d_a, d_b, beta, expected):
    assert braked_verdict(verdict, d_a, d_b, beta) == expected


def test_pairwise_objective_brakes_its_verdicts_but_not_the_win_rate(tokenizer):
    lm, untuned, _, space = steered(tokenizer)
    tie = CallableJudge(lambda p, a, b: 0, name="tie")
    obj = PairwiseObjective(tie, generation=GEN, kl=100.0, reference=untuned)
    base = obj.generate(lm, ROWS, seed=0)
    assert base.drift == [0.0, 0.0, 0.0]
    move(space)
    fresh = obj.generate(lm, ROWS, seed=0)
    raw = obj.verdicts(ROWS, fresh, base, braked=False)
    braked = obj.verdicts(ROWS, fresh, base)
    expected = [braked_verdict(v, d, 0.0, 100.0) for v, d in zip(raw, fresh.drift)]
    assert raw == [0, 0, 0] and any(abs(d) > 0.01 for d in fresh.drift)
    assert braked == expected and braked != raw  # beta 100: a drift of 0.005 nats decides a tie
    win = obj.win_rate(base).evaluate(lm, ROWS)
    assert win.per_example == [(v + 1) / 2 for v in raw]


def test_best_of_n_picks_its_winners_by_the_braked_reward(tokenizer):
    lm, untuned, _, space = steered(tokenizer)
    move(space)
    reward = Reward(length_reward, generation=GEN)
    plain = BestOfN(reward, k=3).refresh(lm, ROWS, seed=5)[1]
    kept, stats = BestOfN(reward, k=3, kl=1.0, reference=untuned).refresh(lm, ROWS, seed=5)
    assert "kl" in stats and stats["kl"] != 0.0
    assert stats["best_reward"] != plain["best_reward"]  # the braked rewards choose


def test_a_batched_population_brakes_each_member_as_the_weights_moved_in_place_would(tokenizer):
    """Each member's KL-hat comes from lm.loglik at that member's point: one batched forward scores every member's
    answers; the values match a walk that moves the weights to each point."""
    from blackbox_zo import MeZO

    values = {}
    for mode in ("batched", "inplace"):
        model, tok = make_tiny_llama(tokenizer)
        model, space = steering_space(model, tok, layers=[0], evaluate=mode)
        lm = TransformersLM(model, tok, batch_size=8)
        reward = Reward(length_reward, generation=GEN, kl=1.0, reference=UntunedLM(lm, space))
        opt = MeZO(space, estimator="population", n=2, eps=0.5, lr=1e-3, seed=2, maximize=True)
        assert (opt.engine.batched) == (mode == "batched")
        opt.step(lambda: reward.evaluate(lm, ROWS, seed=0).value)
        values[mode] = opt.last.values
    assert len(set(values["inplace"])) > 1  # the members differ, so matching them is a real check
    assert values["batched"] == pytest.approx(values["inplace"], abs=1e-3)


def brake_difference(lm, untuned, space, z, eps, estimator):
    """mean KL-hat(theta + eps z) - mean KL-hat(theta - eps z), each side's answers generated at its own point:
    what the brake adds to one zeroth-order probe's difference."""
    prompts = [r["prompt"] for r in ROWS]
    sides = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for t, zt in zip(space.tensors.values(), z):
                t.copy_(sign * eps * zt)
        answers = GEN.run(lm, prompts, 0)
        sides.append(sum(kl_hat(lm, untuned, prompts, answers, estimator=estimator)) / len(prompts))
    with torch.no_grad():
        for t in space.tensors.values():
            t.zero_()
    return sides[0] - sides[1]


def test_at_the_start_k1_pushes_a_probe_to_first_order_and_k3_does_not(tokenizer):
    """The trap behind k3: on greedy answers k1's probe difference is 2 eps z . grad log pi(y) (halving eps halves
    it), so a brake built on it pushes the model to make its own answers less likely; k3 is flat at the start."""
    lm, untuned, _, space = steered(tokenizer)
    gen = torch.Generator().manual_seed(3)
    z = [torch.randn(t.shape, generator=gen) for t in space.tensors.values()]
    k1 = [brake_difference(lm, untuned, space, z, eps, "k1") for eps in (5e-4, 2.5e-4)]
    k3 = [brake_difference(lm, untuned, space, z, eps, "k3") for eps in (5e-4, 2.5e-4)]
    assert abs(k1[0]) > 1e-3  # the push is there and measurable
    assert k1[1] / k1[0] == pytest.approx(0.5, abs=0.1)  # first order in eps
    assert abs(k3[0]) < 0.02 * abs(k1[0]) and abs(k3[1]) < 0.02 * abs(k1[1])  # flat: no push at the start
