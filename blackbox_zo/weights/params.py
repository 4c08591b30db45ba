"""ParamSpace: which tensors of an in-process torch model are tuned, and in-place moves along seeded directions.

It is the torch implementation of the Backend contract: the engine hands it (seed, coefficient) pairs and
it regenerates each direction chunk by chunk, so no direction is ever stored. Optional extras: float32
master copies for low-precision models, magnitude-based sparse masks, and block-wise perturbation.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from blackbox_zo.weights.backend import resolve_evaluate
from blackbox_zo.weights.lowrank import (
    add_lowrank_,
    as_matrix,
    draw_factors,
    lowrank_job,
    lowrank_update_,
    rank_of,
    update_tables,
)
from blackbox_zo.weights.noise import KINDS, add_noise_, derive_seed, generator_id, noise_jobs, noise_slice, run_jobs
from blackbox_zo.weights.noise_kernel import kernel_jobs, run_kernel_jobs, use_kernel
from blackbox_zo.weights.population import Population, unsupported
from blackbox_zo.weights.rounding import add_rounded_

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")


def merge_pairs(pairs: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    """Sum the coefficients of repeated seeds, keeping first-seen order: one noise pass per seed."""
    merged: OrderedDict[int, float] = OrderedDict()
    for seed, coeff in pairs:
        merged[int(seed)] = merged.get(int(seed), 0.0) + float(coeff)
    return [(s, c) for s, c in merged.items() if c != 0.0]


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """A 16-hex digest of names, shapes and a strided sample of values (cheap: ~1 M elements read)."""
    h = hashlib.blake2b(digest_size=8)
    total = sum(t.numel() for t in tensors.values()) or 1
    for name in sorted(tensors):
        flat = tensors[name].detach().reshape(-1)
        stride = max(1, total // (1 << 20))
        sample = flat[::stride].to(device="cpu", dtype=torch.float32)
        h.update(f"{name}:{tuple(tensors[name].shape)}:{float(flat.double().sum()):.10e}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def named_tensors(model_or_params: nn.Module | Mapping[str, torch.Tensor] | Iterable[torch.Tensor]) -> dict:
    """Stable names for what the caller gave: module parameter names, dict keys, or list positions."""
    if isinstance(model_or_params, nn.Module):
        return {n: p for n, p in model_or_params.named_parameters() if p.requires_grad}
    if isinstance(model_or_params, Mapping):
        return dict(model_or_params)
    items = list(model_or_params)
    if items and isinstance(items[0], dict):  # torch.optim-style parameter groups
        items = [p for group in items for p in group["params"]]
    return {f"param.{i}": p for i, p in enumerate(items)}


def block_of_name(name: str) -> str:
    """Block-wise perturbation groups tensors by transformer layer index; the rest form one block."""
    m = _LAYER.search(name)
    return f"layer.{m.group(1)}" if m else "other"


class ParamSpace:
    """The tuned tensors of an in-process model and the in-place operations of the Backend contract."""

    def __init__(
        self,
        model_or_params,
        include: Sequence[str] | str | None = None,
        exclude: Sequence[str] | str | None = None,
        noise: str = "gaussian",
        mask_density: float | None = None,
        blockwise: bool = False,
        master_weights: bool | None = None,
        evaluate: str = "auto",
        module: nn.Module | None = None,
        small: bool = False,
    ):
        """`evaluate`: 'batched' applies a step's points at use time (hooks on `module`, the model that uses the
        tensors; weights untouched, a population in one batched forward), 'inplace' moves the weights to each
        point, 'auto' batches low-rank directions, and `small` spaces (LoRA, prefix, steering), where every tuned
        tensor's use can be hooked (resolve_evaluate decides)."""
        self.rank = rank_of(noise)  # None: elementwise noise; r: low-rank directions for matrices
        if noise not in KINDS and self.rank is None:
            raise ValueError(f"noise must be one of {KINDS} or 'lowrank' / 'lowrank<r>', got {noise!r}")
        if self.rank is not None and mask_density is not None:
            raise ValueError("mask_density applies to elementwise noise, not to low-rank directions")
        if mask_density is not None and not 0.0 < mask_density <= 1.0:
            raise ValueError(f"mask_density must be in (0, 1], got {mask_density}")
        tensors = named_tensors(model_or_params)
        inc = [include] if isinstance(include, str) else list(include or [])
        exc = [exclude] if isinstance(exclude, str) else list(exclude or [])
        tensors = {
            n: p
            for n, p in tensors.items()
            if (not inc or any(re.search(r, n) for r in inc)) and not any(re.search(r, n) for r in exc)
        }
        if not tensors:
            raise ValueError(
                "empty parameter set: no tensor requires grad and matches "
                f"include={inc or 'all'} exclude={exc or 'none'}"
            )
        for n, p in tensors.items():
            if not p.is_contiguous():
                raise ValueError(f"tensor {n!r} is not contiguous; in-place seeded updates need contiguous storage")
            if not p.is_floating_point():
                raise ValueError(f"tensor {n!r} has dtype {p.dtype}; only floating-point tensors can be tuned")
        self.noise_kind = noise
        self.tensors: dict[str, torch.Tensor] = tensors
        self.module = module if module is not None else model_or_params if isinstance(model_or_params, nn.Module) else None
        self.evaluate_mode = resolve_evaluate(evaluate, small or self.rank is not None,
                                              lambda: self._batching_obstacle(mask_density, blockwise))
        self.drawn: dict = {}  # low-rank factors a population drew this step, {name: (seeds, U, V)}, for its update
        low = any(p.dtype != torch.float32 for p in tensors.values())
        # float32 masters only where the weights are moved in place: a batched space writes each step once, rounded
        # stochastically, and never perturbs-and-restores
        self.master_weights = (low and self.evaluate_mode == "inplace") if master_weights is None else master_weights
        # float32 masters for bf16/fp16 tensors: theta lives in fp32, the model sees its rounding
        self.masters = (
            {n: p.detach().float().clone() for n, p in tensors.items()} if self.master_weights else {}
        )
        self.masks = {n: self._magnitude_mask(p, mask_density) for n, p in tensors.items()} if mask_density else {}
        self.blockwise = blockwise
        self.blocks = sorted({block_of_name(n) for n in tensors}) if blockwise else ["all"]

    def _batching_obstacle(self, mask_density, blockwise) -> str | None:
        """Why this space cannot evaluate a population at use time, or None when every tuned tensor's use is hooked."""
        if self.module is None:
            return "no module was given (pass module=the model that uses the tensors)"
        if mask_density is not None or blockwise:
            return "mask_density / blockwise apply to in-place walks"
        bad = unsupported(self.module, self.tensors, self.rank is not None)
        return f"the use of {bad[0]!r} cannot be hooked ({len(bad)} such tensors)" if bad else None

    def population(self, points):
        """Context: the points applied at use time through hooks on the module (weights untouched): a Population."""
        if self.evaluate_mode != "batched":
            raise ValueError("this space evaluates in place (evaluate='inplace'): it has no batched population")
        self.drawn.clear()  # factors of an earlier step (one that failed) are never needed again
        return Population(self, points, self.module)

    @staticmethod
    def _magnitude_mask(p: torch.Tensor, density: float) -> torch.Tensor:
        # ZO-Bench / S-MeZO: perturb only the `density` share of entries with the smallest |w|
        flat = p.detach().float().abs().reshape(-1)
        k = max(1, int(round(density * flat.numel())))
        threshold = flat.kthvalue(k).values if k < flat.numel() else flat.max()
        return flat <= threshold  # bool: 1 byte per element

    # --- Backend contract -------------------------------------------------------------------------
    def numel(self) -> int:
        return sum(p.numel() for p in self.tensors.values())

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device

    def generator_id(self) -> str:
        return generator_id(self.device) + (f"-lowrank{self.rank}" if self.rank else "")

    def block_for_seed(self, seed: int) -> str:
        """Block-wise mode: the direction of `seed` touches only this block (chosen from the seed)."""
        return self.blocks[derive_seed(seed, "block") % len(self.blocks)]

    def _names_for(self, seed: int) -> list[str]:
        if not self.blockwise:
            return list(self.tensors)
        block = self.block_for_seed(seed)
        return [n for n in self.tensors if block_of_name(n) == block]

    def apply(self, pairs: Sequence[tuple[int, float]]) -> None:
        """theta <- theta + sum_i c_i z(seed_i): per tensor, one chunked noise pass per distinct seed.

        A batched space writes the whole sum in one pass per tensor (low-rank: one rank-(n r) product), rounded
        stochastically into bf16/fp16 weights with bits from the pairs' seeds, so replay rounds the same way."""
        merged = merge_pairs(pairs)
        if not merged:
            return
        if self.evaluate_mode == "batched" and not self.masters:
            return self._write_once(merged)
        targets = {seed: set(self._names_for(seed)) for seed, _ in merged}
        drawn = self._draw_all(merged, targets) if self.rank is not None and self.device.type == "cuda" else None
        jobs = []
        for name, p in self.tensors.items():
            work = [(s, c) for s, c in merged if name in targets[s]]
            master = self.masters.get(name)
            flat = (master if master is not None else p.detach()).view(-1)
            mirror = p.detach().view(-1) if master is not None else None  # the model sees round(theta_master)
            if self.rank is not None and p.ndim >= 2:
                jobs += lowrank_job(flat, p.shape, name, work, self.rank, mirror, drawn)
                continue
            kind = "gaussian" if self.rank is not None else self.noise_kind
            jobs += noise_jobs(flat, name, work, kind=kind, mask=self.masks.get(name), mirror=mirror)
        run_jobs(jobs, self.device)  # chunks of all tensors at once: small tensors use every core too

    def _draw_all(self, merged: Sequence[tuple[int, float]], targets: dict) -> dict:
        """Every matrix's factors for these seeds in a few launches (CUDA: one per distinct length, not two per matrix)."""
        requests = [(name, *as_matrix(p).shape, [s for s, c in merged if c != 0.0 and name in targets[s]])
                    for name, p in self.tensors.items() if p.ndim >= 2]
        return draw_factors([r for r in requests if r[3]], self.rank, self.device)

    @torch.no_grad()
    def _write_once(self, merged: list[tuple[int, float]]) -> None:
        round_seed = derive_seed("round", *[s for s, _ in merged])
        tables = update_tables(self.drawn, merged, self.rank) if self.rank is not None else {}  # all matrices at once
        for name, p in self.tensors.items():
            if self.rank is not None and p.ndim >= 2:
                lowrank_update_(p, name, merged, self.rank, round_seed, self.drawn, tables.get(name))
                continue
            kind = "gaussian" if self.rank is not None else self.noise_kind
            if use_kernel(p):  # CUDA: SR(p + sum_i c_i z_i) in one fused pass (noise_kernel's stream and bits)
                rounding = "nearest" if p.dtype == torch.float32 else "stochastic"
                run_kernel_jobs(kernel_jobs(p.detach().view(-1), name, merged, kind=kind, rounding=rounding,
                                            round_key=derive_seed(round_seed, name, "round")))
                continue
            delta = torch.zeros(p.numel(), dtype=torch.float32, device=p.device)
            for seed, coeff in merged:
                delta.add_(noise_slice(seed, name, p.numel(), 0, p.numel(), kind, p.device), alpha=coeff)  # sum_i c_i z_i
            add_rounded_(p, delta.view_as(p), round_seed, name)
        self.drawn.clear()

    def decay(self, factor: float) -> None:
        """theta <- factor * theta for matrices only (decoupled weight decay skips biases and norms)."""
        with torch.no_grad():
            for name, p in self.tensors.items():
                if p.ndim < 2:
                    continue
                if name in self.masters:
                    self.masters[name].mul_(factor)
                    p.copy_(self.masters[name])
                else:
                    p.mul_(factor)

    def map_dense(self, pairs: Sequence[tuple[int, float]], fn: Callable[[str, torch.Tensor, torch.Tensor], None]) -> None:
        """For dense-state optimizers: fn(name, theta_flat_fp32, g_flat) with g = sum_i c_i z_i, one tensor at a time."""
        merged = merge_pairs(pairs)
        targets = {seed: set(self._names_for(seed)) for seed, _ in merged}
        with torch.no_grad():
            for name, p in self.tensors.items():
                g = torch.zeros(p.numel(), dtype=torch.float32, device=p.device)  # one tensor of scratch
                mine = [(seed, coeff) for seed, coeff in merged if name in targets[seed]]
                if self.rank is not None and p.ndim >= 2:
                    add_lowrank_(g.view(p.shape[0], -1), name, mine, self.rank)
                for seed, coeff in mine if self.rank is None or p.ndim < 2 else []:
                    kind = "gaussian" if self.rank is not None else self.noise_kind
                    add_noise_(g, seed, name, coeff, kind=kind, mask=self.masks.get(name))
                if name in self.masters:
                    fn(name, self.masters[name].view(-1), g)
                    p.copy_(self.masters[name])
                elif p.dtype == torch.float32:
                    fn(name, p.view(-1), g)
                else:
                    tmp = p.detach().float().reshape(-1)
                    fn(name, tmp, g)
                    p.copy_(tmp.view_as(p))

    def fingerprint(self) -> str:
        return fingerprint_tensors(self.masters or self.tensors)

    def state_dict(self) -> dict[str, torch.Tensor]:
        src = self.masters or self.tensors
        return {n: t.detach().to(device="cpu", dtype=torch.float32).clone() for n, t in src.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy tuned values back in (e.g. to restore a snapshot in tests or tools)."""
        missing = set(self.tensors) - set(state)
        if missing:
            raise KeyError(f"state is missing tuned tensors: {sorted(missing)[:5]}")
        with torch.no_grad():
            for n, p in self.tensors.items():
                if n in self.masters:
                    self.masters[n].copy_(state[n])
                p.copy_(state[n])

    def describe(self) -> dict:
        """Plain-data summary recorded in trajectory headers and printed by tools."""
        return {
            "tensors": len(self.tensors),
            "numel": self.numel(),
            "noise": self.noise_kind,
            "master_weights": self.master_weights,
            "masked": bool(self.masks),
            "blockwise": self.blockwise,
            "evaluate": self.evaluate_mode,
        }
