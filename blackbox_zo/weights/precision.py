"""Is the model exact enough for ZO? Measures restore drift and how much of an update actually lands.

In bf16/fp16, theta + eps z - 2 eps z + eps z is not theta, and lr * g * z ~ 1e-7 mostly rounds away.
float32 masters (ParamSpace(master_weights=True)) fix both; this check shows it, and compares them with
the three ways to keep no masters (OPTIONS; docs/precision.md says which is the default and why).
"""

from __future__ import annotations

import torch

from blackbox_zo.weights.noise import derive_seed, noise_slice
from blackbox_zo.weights.rounding import add_rounded_

OPTIONS = ("masters", "nearest", "regenerate", "stochastic")


def _norm(tensors) -> float:
    return float(sum(t.double().pow(2).sum() for t in tensors)) ** 0.5


def check_precision(space, eps: float = 1e-3, update: float = 1e-7, seed: int = 0, dtype: torch.dtype | None = None) -> dict:
    """One MeZO cycle on the stored weights (fp32 masters where present), undone afterwards.

    drift_rms: RMS of theta after (+eps z, -2 eps z, +eps z) minus theta before (0 would be exact).
    landed_fraction: ||stored change|| / ||update * z|| after one update (1.0 = the whole update landed).
    options: the same cycle simulated for each of OPTIONS with the weights stored in `dtype` (default: the
    model's own dtype per tensor); see compare_options.
    """
    s = derive_seed(seed, "precision-check")
    before = space.state_dict()
    numel = sum(t.numel() for t in before.values())
    try:
        for scale in (eps, -2 * eps, eps):  # perturb, flip, restore: MeZO's perturbation moves
            space.apply([(s, scale)])
        drift = _norm(space.state_dict()[n] - before[n] for n in before) / numel**0.5
        space.load_state_dict(before)
        space.apply([(s, update)])
        moved = space.state_dict()
        landed = _norm(moved[n] - before[n] for n in before)
        intended = _norm(update * _direction(space, s, n) for n in before)
        options = compare_options(space, before, s, eps, update, dtype)
        return {"drift_rms": drift, "landed_fraction": landed / intended, "eps": eps, "update": update, "options": options}
    finally:
        space.load_state_dict(before)


def _direction(space, seed: int, name: str) -> torch.Tensor:
    """z(seed) for one tensor as the space applies it (mask and block-wise selection included)."""
    p = space.tensors[name]
    if space.blockwise and name not in space._names_for(seed):
        return torch.zeros(p.numel())
    z = noise_slice(seed, name, p.numel(), 0, p.numel(), space.noise_kind)
    return z * space.masks[name].cpu() if name in space.masks else z


def _preimage(y: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A t of y's dtype with round(t + d) == y, nearest to y - d: undo a rounded move without remembering theta.

    round(. + d) is monotone, so its preimages are neighbours; t = round(y - d) misses by at most one step.
    Where two weights rounded to the same y (d carried them into a coarser binade) nothing tells them apart.
    """
    t = (y.float() - d).to(y.dtype)
    for _ in range(2):
        hit = (t.float() + d).to(y.dtype)
        toward = torch.where(hit < y, torch.full_like(t, float("inf")), torch.full_like(t, float("-inf")))
        t = torch.where(hit == y, t, torch.nextafter(t, toward))
    return t


def _cycle(w: torch.Tensor, d: torch.Tensor, option: str) -> torch.Tensor:
    """w after +d, -2d, +d as `option` stores it (w: the stored weights; masters: float32)."""
    if option in ("masters", "nearest"):
        for move in (d, -2 * d, d):
            w = (w.float() + move).to(w.dtype)  # every move rounds to nearest (exact-ish in float32)
        return w
    up = (w.float() + d).to(w.dtype)  # evaluate at round(theta + d) ...
    down = (_preimage(up, d).float() - d).to(w.dtype)  # ... and round(theta - d), theta re-derived, not stored
    return _preimage(down, -d)  # restore: re-derive theta from theta - d and the regenerated d


def compare_options(space, before: dict, seed: int, eps: float, update: float, dtype: torch.dtype | None = None) -> dict:
    """Per option: drift_rms and restored (share of weights bitwise back) after one +eps/-2eps/+eps cycle,
    landed_fraction (||change|| / ||update z||) and lost_fraction (1 - <change, update z> / ||update z||^2:
    the share of the update's projection on z that never reached the weights; lost_fraction_se: its standard
    error, large for stochastic rounding of tiny updates) after one update, and the extra bytes kept per weight.
    Simulated one tensor at a time on CPU copies; the space is not touched."""
    sums = {o: {"sq": 0.0, "back": 0, "change_sq": 0.0, "along": 0.0, "var": 0.0} for o in OPTIONS}
    intended_sq, total = 0.0, 0
    for name, theta in before.items():
        low = dtype or space.tensors[name].dtype
        z = _direction(space, seed, name).view_as(theta).float()
        u = update * z
        intended_sq += float(u.double().pow(2).sum())
        total += theta.numel()
        for o in OPTIONS:
            w = theta if o == "masters" else theta.to(low)
            back = _cycle(w, eps * z, o)
            if o == "stochastic":
                moved = w.clone()
                add_rounded_(moved, u, derive_seed(seed, "update"), name)  # E[round(w + u)] = w + u
            else:
                moved = (w.float() + u).to(w.dtype)
            diff, change = (back.double() - w.double()), (moved.double() - w.double())
            acc = sums[o]
            acc["sq"] += float(diff.pow(2).sum())
            acc["back"] += int((diff == 0).sum())
            acc["change_sq"] += float(change.pow(2).sum())
            acc["along"] += float((change * u.double()).sum())
            acc["var"] += float(((change - u.double()) * u.double()).pow(2).sum())  # rounding noise seen along z
    out = {}
    for o, acc in sums.items():
        out[o] = {
            "drift_rms": (acc["sq"] / total) ** 0.5,
            "restored": acc["back"] / total,
            "landed_fraction": (acc["change_sq"] / intended_sq) ** 0.5 if intended_sq else 1.0,
            "lost_fraction": 1 - acc["along"] / intended_sq if intended_sq else 0.0,
            "lost_fraction_se": acc["var"] ** 0.5 / intended_sq if intended_sq else 0.0,  # its sampling error
            "extra_bytes_per_weight": 4 if o == "masters" else 0,
        }
    return out
