"""bz.subspace: theta = theta0 + A z over any space, z the tuned vector; the engine, replay and export work on it unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.weights.spaces import prefix_space


def norms_space(model):
    return bz.ParamSpace(model, include=[r"norm"])


def objective(model, tok):
    ids = tok(["a film that works", "dull and long"], return_tensors="pt", padding=True)
    return lambda: float(model(**ids).logits[:, -1].log_softmax(-1)[:, 5].mean())


def test_starts_at_theta0_and_moves_theta_by_a_z(tiny_llama):
    model, _ = tiny_llama
    space = norms_space(model)
    theta0 = space.state_dict()
    sub = bz.subspace(space, dim=8, seed=3)
    assert sub.numel() == 8 and torch.equal(sub.z, torch.zeros(8))
    sub.set_vector(torch.arange(8, dtype=torch.float32))
    for name, t0 in theta0.items():  # theta - theta0 = A_t z, per tensor
        expected = t0.reshape(-1) + sub.projection(name) @ torch.arange(8, dtype=torch.float32)
        assert torch.equal(space.state_dict()[name].reshape(-1), expected)
    assert not torch.equal(space.state_dict()[name], theta0[name])
    sub.set_vector(torch.zeros(8))
    assert all(torch.equal(space.state_dict()[n], t) for n, t in theta0.items())


def test_scale_is_theta0_spread_per_tensor(tiny_llama, tokenizer):
    """For z ~ N(0, I_d), each coordinate of A z has the std of its tensor's initial values (BBT's choice)."""
    model, tok = tiny_llama
    model, space = prefix_space(model, tok, num_tokens=4)
    sub = bz.subspace(space, dim=200, seed=0)
    for name, t0 in space.state_dict().items():
        a = sub.projection(name)
        spread = float(t0.double().std())
        assert sub.scales[name] == pytest.approx(spread)
        # Var((A z)_i) = sum_j A_ij^2 for unit z: its mean over rows must be spread^2 (within sampling error)
        assert float(a.double().pow(2).sum(1).mean().sqrt()) == pytest.approx(spread, rel=0.05)


def test_mezo_replay_is_bitwise(tiny_llama, tmp_path):
    model, tok = tiny_llama
    space = norms_space(model)
    base = space.state_dict()
    f = objective(model, tok)
    opt = bz.MeZO(bz.subspace(space, dim=16, seed=1), seed=2, eps=0.1, lr=0.05, n=2, maximize=True,
                  trajectory=tmp_path / "run.jsonl")
    for _ in range(4):
        opt.step(f)
    opt.close()
    tuned = space.state_dict()
    assert any(not torch.equal(tuned[n], base[n]) for n in base)
    space.load_state_dict(base)  # back to theta0, then rebuild from the log
    again = bz.MeZO.replay(bz.subspace(space, dim=16, seed=1), tmp_path / "run.jsonl")
    assert all(torch.equal(again.backend.state_dict()[n], tuned[n]) for n in tuned)


def test_adam_works_on_z(tiny_llama):
    model, tok = tiny_llama
    sub = bz.subspace(norms_space(model), dim=4, seed=0)
    opt = bz.MeZO(sub, optimizer="adam", eps=0.1, lr=0.01, maximize=True)
    opt.step(objective(model, tok))
    assert float(sub.z.abs().sum()) > 0


def test_projection_regenerates_identically_in_a_new_process():
    code = ("import torch, blackbox_zo as bz; "
            "p = {'w': torch.linspace(-1, 1, 300).reshape(30, 10).requires_grad_()}; "
            "s = bz.subspace(bz.ParamSpace(p), dim=7, seed=5); "
            "print(s.projection('w').double().sum().item(), s.projection('w')[13, 4].item())")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    here = bz.subspace(bz.ParamSpace({"w": torch.linspace(-1, 1, 300).reshape(30, 10).requires_grad_()}), dim=7, seed=5)
    mine = f"{here.projection('w').double().sum().item()} {here.projection('w')[13, 4].item()}\n"
    assert outs[0] == outs[1] == mine
    other = bz.subspace(bz.ParamSpace({"w": torch.linspace(-1, 1, 300).reshape(30, 10).requires_grad_()}), dim=7, seed=6)
    assert not torch.equal(other.projection("w"), here.projection("w"))


def test_redrawn_projection_equals_cached(tiny_llama):
    model, _ = tiny_llama
    cached = bz.subspace(norms_space(model), dim=5, seed=9)
    redrawn = bz.Subspace(norms_space(model), dim=5, seed=9, cache_limit=0)
    for name in cached.base:
        assert torch.equal(cached.projection(name), redrawn.projection(name))
    assert not redrawn._proj


@pytest.mark.parametrize("kwargs, message", [
    ({"dim": 0}, "dim must be an integer >= 1, got 0"),
    ({"dim": 2.5}, "dim must be an integer >= 1, got 2.5"),
    ({"dim": 10 ** 9}, "exceeds the"),
    ({"dim": 4, "seed": "x"}, "seed must be an int, got 'x'"),
    ({"dim": 4, "scale": -1.0}, "scale must be a finite number > 0"),
])
def test_bad_arguments_name_the_problem(tiny_llama, kwargs, message):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bz.subspace(norms_space(model), **kwargs)


def test_space_of_zeros_needs_a_scale_and_equal_values_use_their_size():
    ones = bz.subspace(bz.ParamSpace({"norm": torch.full((6,), 2.0, requires_grad=True)}), dim=3)
    assert ones.scales == {"norm": 2.0}  # no spread: the RMS of theta0
    zeros = {"steer": torch.zeros(12, requires_grad=True)}
    with pytest.raises(ValueError, match="all zero.*pass scale"):
        bz.subspace(bz.ParamSpace(zeros), dim=3)
    sub = bz.subspace(bz.ParamSpace(zeros), dim=3, scale=0.5)
    assert sub.scales == {"steer": 0.5}
