"""Drift from pi_0, read exactly: per-token KL over the full vocabulary at the held answers, in every generation run.

Real parts: a tiny random Llama with the embedded tokenizer, steering vectors switched off for pi_0 (UntunedLM),
a hand computation with torch.nn.functional on the model's own logits, and a config run that stops on wall time.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import blackbox_zo as bz
from blackbox_zo.lm import TransformersLM, UntunedLM
from blackbox_zo.setup.config import TrainConfig
from blackbox_zo.setup.fluency_bound import FluencyBound
from objectives.drift import token_kl
from objectives.kl import kl_hat

PROMPTS = ["Tell me about your day.", "What is a good breakfast?", "Describe the sea."]


def steered(tiny_llama):
    model, tok = tiny_llama
    model, space = bz.steering_space(model, tok, layers=[0])
    lm = TransformersLM(model, tok, batch_size=2)
    return lm, UntunedLM(lm, space), space


def move(space, scale=3.0):
    with torch.no_grad():
        for t in space.tensors.values():
            t.add_(scale * torch.randn(t.shape, generator=torch.Generator().manual_seed(1)))


def test_drift_is_zero_at_the_start_and_matches_a_hand_computation_after_a_move(tiny_llama):
    lm, reference, space = steered(tiny_llama)
    answers = lm.generate(PROMPTS, max_new_tokens=6)
    assert token_kl(lm, reference, PROMPTS, answers) == (0.0, "exact")
    move(space)
    answers = lm.generate(PROMPTS, max_new_tokens=6)
    kl, how = token_kl(lm, reference, PROMPTS, answers)
    # by hand: one row at a time, the model's full logits with and without the steering vector
    model, tok = tiny_llama
    per_token = []
    for p, a in zip(PROMPTS, answers):
        context = tok(lm.prompt_text(p))["input_ids"]
        ids = tok(lm.prompt_text(p) + a)["input_ids"]
        n = len(ids) - len(context)
        assert ids[:len(context)] == context  # no merge across the boundary for these answers
        with torch.no_grad():
            tuned = F.log_softmax(model(torch.tensor([ids])).logits[0, -n - 1:-1].float(), -1)
            with reference.switched_off():
                untuned = F.log_softmax(model(torch.tensor([ids])).logits[0, -n - 1:-1].float(), -1)
        per_token += F.kl_div(untuned, tuned, log_target=True, reduction="none").sum(-1).tolist()
    assert how == "exact" and kl > 1e-3
    assert kl == pytest.approx(sum(per_token) / len(per_token), rel=1e-4)


def test_the_k3_fallback_is_the_brakes_estimator_per_token(tiny_llama):
    """An LM that returns no full distribution (vLLM) gets TRL's k3 per token: kl_hat's sum over its tokens."""
    lm, reference, space = steered(tiny_llama)
    move(space)
    answers = lm.generate(PROMPTS, max_new_tokens=6)

    class TokensOnly:  # the LM protocol without answer_logprobs, as VLLMBackend offers it
        def __init__(self, inner):
            self.loglik, self.prompt_text = inner.loglik, inner.prompt_text

    kl, how = token_kl(TokensOnly(lm), TokensOnly(reference), PROMPTS, answers)
    tokens = sum(len(t) for t in lm.loglik([lm.prompt_text(p) for p in PROMPTS], answers, reduce="tokens"))
    assert how == "k3"
    assert kl == pytest.approx(math.fsum(kl_hat(lm, reference, PROMPTS, answers)) / tokens, rel=1e-9)


def test_distinct_2_is_bounded_relative_to_its_start():
    bound = FluencyBound()
    start = {"distinct_2": 0.9}
    assert bound.breaches(start, {"distinct_2": 0.73}) == []  # 0.81x: sentences grown alike, still counted
    assert bound.breaches(start, {"distinct_2": 0.71}) == ["distinct_2"]  # 0.79x
    assert FluencyBound(distinct_2=0.05).breaches(start, {"distinct_2": 0.84}) == ["distinct_2"]  # the old rule
    with pytest.raises(ValueError, match="distinct_2_ratio must be <= 1"):
        FluencyBound(distinct_2_ratio=1.5)


def test_max_seconds_is_checked():
    with pytest.raises(ValueError, match="train.max_seconds must be a finite number"):
        TrainConfig(max_seconds=float("nan"))
    with pytest.raises(ValueError, match="train.max_seconds"):
        TrainConfig(max_seconds=0)


def test_a_run_stops_on_wall_time_validates_there_and_logs_its_exact_drift(tiny_llama_dir, tmp_path):
    from blackbox_zo.running.run import run

    out = tmp_path / "run"
    cfg = {"model": {"name": str(tiny_llama_dir), "batch_size": 4},
           "objective": {"factory": "tests.tasks:length_task"},
           "space": {"kind": "steer", "steer_layers": [0]},
           "optim": {"lr": 0.5},
           "train": {"steps": 100000, "max_seconds": 3, "batch_size": 2, "eval_every": 100000, "plot": False,
                     "progress": False},
           "output": str(out)}
    summary = run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) < 100000 and summary["steps"] == len(rows)
    assert "val" in rows[-1] and "val_kl_exact" in rows[-1]  # the stop is a validated step
    assert all("val" not in r for r in rows[:-1])  # eval_every never came round before the clock ran out
    start = json.loads((out / "start.json").read_text())
    assert start["text"]["kl_exact"] == 0.0  # pi_0 against itself
    assert rows[-1]["val_kl_exact"] > 0.0  # a steering vector moved by lr 0.5 for seconds
    assert summary["text_final"]["kl_exact"] == rows[-1]["val_kl_exact"]


def test_answer_kl_on_fixed_continuations_matches_the_exact_drift(tiny_llama):
    """answer_kl against cached pi_0 distributions is the exact KL token_kl reads from both LMs."""
    lm, reference, space = steered(tiny_llama)
    fixed = reference.generate(PROMPTS, max_new_tokens=6)  # pi_0's own answers, fixed
    cached = reference.answer_logprobs([reference.prompt_text(p) for p in PROMPTS], fixed)
    assert all(k == 0.0 for row in lm.answer_kl([lm.prompt_text(p) for p in PROMPTS], fixed, cached) for k in row)
    move(space)
    per_token = lm.answer_kl([lm.prompt_text(p) for p in PROMPTS], fixed, cached)
    kl, how = token_kl(lm, reference, PROMPTS, fixed)
    flat = [k for row in per_token for k in row]
    assert how == "exact" and sum(flat) / len(flat) == pytest.approx(kl, rel=1e-5) and kl > 1e-3


def test_the_untuned_brake_reads_each_probe_at_its_own_weights_batched_as_in_place(tiny_llama):
    """kl_on='untuned': a probe's brake is the KL on pi_0's fixed answers at that probe's weights; a batched
    population (every member in one forward) gives the values the in-place walk gives."""
    import copy

    from objectives import Generation, Reward

    base, tok = tiny_llama
    values = {}
    for evaluate in ("batched", "inplace"):
        model, space = bz.steering_space(copy.deepcopy(base), tok, layers=[0], evaluate=evaluate)
        lm = TransformersLM(model, tok, batch_size=2)
        move(space, 1.0)
        reference = UntunedLM(lm, space)
        reward = Reward(lambda prompts, completions, **_: [0.0] * len(completions),
                        generation=Generation(max_new_tokens=5))
        reward.use_reference(reference, 1.0, "untuned")
        opt = bz.MeZO(space, seed=0, eps=0.5, maximize=True)
        opt.step(lambda: reward.evaluate(lm, [{"prompt": p} for p in PROMPTS], seed=0).value)
        values[evaluate] = opt.last.values
    plus, minus = values["inplace"]
    assert plus != minus and plus < 0 and minus < 0  # - beta x KL: both sides drifted, by different amounts
    assert values["batched"] == pytest.approx(values["inplace"], rel=1e-4)


def test_a_config_run_brakes_on_the_untuned_answers(tiny_llama_dir, tmp_path):
    """objective: {kl: beta, kl_on: untuned} reaches the training objective; validation reports the reward itself."""
    from blackbox_zo.running.run import run

    out = tmp_path / "run"
    run({"model": {"name": str(tiny_llama_dir), "batch_size": 4},
         "objective": {"factory": "tests.tasks:length_task", "kl": 1.0, "kl_on": "untuned"},
         "space": {"kind": "steer", "steer_layers": [0]}, "optim": {"lr": 0.5, "maximize": True},
         "train": {"steps": 2, "batch_size": 2, "eval_every": 1, "plot": False, "progress": False}, "output": str(out)})
    steps = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()[1:]]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lengths = [float(len(s["answer"])) for s in map(json.loads, (out / "samples.jsonl").read_text().splitlines())
               if s["step"] == 2]
    assert rows[-1]["val"] == pytest.approx(sum(lengths) / len(lengths))  # validation: the unbraked reward
    assert any(v != round(v) for s in steps for v in s["values"])  # training values: length - KL, not whole numbers
