"""A small real problem for engine tests: a linear classifier scored by its 0-1 error (non-differentiable)."""

import sys

import torch


def make_problem(seed: int = 0, n: int = 400, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w_true = torch.randn(d, generator=g)
    y = (X @ w_true + 0.3 > 0).float()
    model = torch.nn.Linear(d, 1)
    with torch.no_grad():  # a clearly bad start: the reversed true classifier, scaled down
        model.weight.copy_(-0.3 * w_true.unsqueeze(0))
        model.bias.fill_(-0.09)
    return model, X, y


def zero_one_error(model, X, y) -> float:
    return ((model(X).squeeze(-1) > 0).float() != y).float().mean().item()


if __name__ == "__main__":  # used by the kill -9 test: python tests/zo_toy.py LOG STEPS SLEEP [NOISE]
    import time

    from blackbox_zo import MeZO

    log, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    noise = sys.argv[4] if len(sys.argv) > 4 else "gaussian"  # lowrank: the points are applied at use time (batched)
    model, X, y = make_problem()
    opt = MeZO(model, lr=0.05, eps=0.05, seed=3, optimizer="momentum", trajectory=log, resume=True, noise=noise)
    while opt.step_count < steps:
        opt.step(lambda: zero_one_error(model, X, y))
        time.sleep(pause)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, log + ".final.pt")
