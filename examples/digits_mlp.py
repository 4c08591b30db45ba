"""Tune a small MLP on scikit-learn's digits for accuracy, a non-differentiable objective, with MeZO's torch.optim face.

No gradients anywhere: each step perturbs the weights by +-eps*z, measures training-batch accuracy at both
points, and moves along z.
eps must be large enough (0.1) that +-eps*z flips some predictions of the batch, else both accuracies tie
and the step is zero; n=8 directions per step and Adam (ZO-Adam, 8 bytes of state per weight) make the
steps reliable. Seeds 0 and 1 both reach about 93-94 % held-out accuracy from about 4 %. Offline (the digits
ship with scikit-learn); under a minute on a CPU.

    python examples/digits_mlp.py [--steps N] [--optimizer adam|sgd|momentum] [--seed S]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from blackbox_zo import MeZO


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct argmax predictions: piecewise constant in the weights, so no useful gradient."""
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "adam"])
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--n", type=int, default=8, help="directions per step (n-SPSA)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a 2.4k-parameter model: threads cost more than they give
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # 8x8 images, pixels 0..16
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=args.seed, stratify=y)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

    opt = MeZO(model, lr=args.lr, eps=args.eps, seed=args.seed, maximize=True,
               optimizer=args.optimizer, n=args.n)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"digits: {len(x_tr)} train / {len(x_te)} held-out images; MLP 64-32-10 ({n_params} weights)")
    print(f"settings: optimizer={args.optimizer} lr={args.lr} eps={args.eps} n={args.n} "
          f"batch={args.batch} steps={args.steps} seed={args.seed}")
    print(f"before: held-out accuracy {accuracy(model, x_te, y_te):.3f}")

    batches = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_tr), (args.batch,), generator=batches)
        xb, yb = x_tr[idx], y_tr[idx]
        opt.step(lambda: accuracy(model, xb, yb))  # one batch for every evaluation of this step
        if step % (args.steps // 5) == 0:
            print(f"step {step:5d}: train {accuracy(model, x_tr, y_tr):.3f}  held-out {accuracy(model, x_te, y_te):.3f}")
    print(f"after:  held-out accuracy {accuracy(model, x_te, y_te):.3f}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
