"""Spec(anchor=lambda): each step pulls theta toward theta_0 (weights/anchor.py), logged and replayed bitwise.

Real parts: a tiny random Llama saved as a safetensors checkpoint and loaded back (theta_0 is read from that file,
memory-mapped), real steering vectors (theta_0 kept in memory), MeZO with a trajectory and its replay.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import blackbox_zo as bz
from blackbox_zo import ParamSpace, steering_space
from blackbox_zo.weights.anchor import Anchor
from tests.conftest import make_tiny_llama

IDS = torch.arange(2, 18).reshape(2, 8)


def loss_of(model):
    with torch.no_grad():
        return float(model(IDS, labels=IDS).loss)


def distance(space, start):
    return sum(float((space.state_dict()[n] - start[n]).norm()) ** 2 for n in start) ** 0.5


def tuned(folder, anchor, log=None, steps=6, resume=False):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    space = ParamSpace(model, include=[r"layers\.0\.mlp"])
    opt = bz.MeZO(space, lr=0.05, eps=1e-2, seed=3, anchor=anchor, trajectory=log, resume=resume)
    for _ in range(steps - opt.step_count):
        opt.step(lambda: loss_of(model))
    opt.close()
    return space, opt


def test_weight_space_reads_theta0_from_the_checkpoint_and_replays_bitwise(tiny_llama_dir, tmp_path):
    log = tmp_path / "trajectory.jsonl"
    space, opt = tuned(tiny_llama_dir, 2.0, log)
    anchor = opt.engine.anchor
    assert anchor.mapped and anchor.resident_bytes == 0  # no resident copy: theta_0 from the safetensors file
    replayed, _ = tuned(tiny_llama_dir, 2.0, log, resume=True)  # base weights + the log, no evaluation
    a, b = space.state_dict(), replayed.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    plain, _ = tuned(tiny_llama_dir, 0.0)
    assert any(not torch.equal(a[n], plain.state_dict()[n]) for n in a)  # the anchor changed the run


def test_anchor_maps_the_checkpoint_and_pulls_exactly(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    space = ParamSpace(model, include=[r"layers\.0\.mlp"])
    start = space.state_dict()
    anchor = Anchor(space)
    assert set(anchor.mapped) == set(space.tensors) and anchor.resident_bytes == 0
    space.apply([(7, 1.0)])
    before = {n: space.state_dict()[n] - start[n] for n in start}
    anchor.pull(0.25)
    for n in start:  # theta - theta_0 shrinks by exactly 1 - r
        assert torch.allclose(space.state_dict()[n] - start[n], 0.75 * before[n], atol=1e-6)


def test_anchor_pulls_a_drifting_run_back(tokenizer):
    def run(anchor):
        model, tok = make_tiny_llama(tokenizer)
        model, space = steering_space(model, tok, layers=[0])
        start = space.state_dict()
        opt = bz.MeZO(space, lr=0.05, eps=1e-2, seed=1, anchor=anchor)
        drift = []
        for _ in range(20):
            opt.step(lambda: loss_of(model))
            drift.append(distance(space, start))
        return drift

    free, anchored = run(0.0), run(8.0)
    assert anchored[-1] < 0.6 * free[-1]  # lr * lambda = 0.4 a step: the anchored run stays near its start
    assert free[-1] > free[len(free) // 2]  # the free run keeps drifting


def test_anchor_must_be_a_number_at_least_zero():
    with pytest.raises(ValueError, match="anchor must be a finite number >= 0"):
        bz.Spec(anchor=-1.0)
