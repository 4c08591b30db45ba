"""A random low-dimensional subspace of any space: theta = theta0 + A z, tuned through the d numbers of z.

Black-Box Tuning (Sun et al. 2022) searches a 500-dimensional z instead of a soft prompt's thousands of numbers;
A is a fixed random projection regenerated from its seed (never stored), so the engine, CMA-ES and replay see z only.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable, Sequence

import torch

from blackbox_zo.weights.backend import InPlace
from blackbox_zo.weights.noise import add_noise_, derive_seed, generator_id
from blackbox_zo.weights.params import merge_pairs

Z_NAME = "subspace.z"  # the noise stream of directions in z-space
BLOCK = 1 << 20  # elements of A per independently seeded block (whole rows, so a block never depends on the others)
CACHE_LIMIT = 1 << 26  # A is kept in memory up to this many elements (256 MiB); beyond, its blocks are redrawn per write


class Subspace(InPlace):
    """theta = theta0 + A z over a wrapped space; z (d numbers, start 0) is the tuned vector of the Backend contract.

    Scale (BBT's choice with CMA's sigma_m = 1): A[i, j] ~ N(0, s_t^2 / d) for rows i of tensor t, s_t = std of
    theta0's values in t. So for z ~ N(0, I_d) each coordinate of A z has std s_t: a z-step of size 1 moves every
    weight by about the spread of its tensor's initial values. Tensors with no spread (zero-initialised LoRA B,
    norm weights all 1) take the std over the whole space, or when that is 0 too its RMS; a space of zeros only
    (new steering vectors) needs `scale`, which then sets s for every tensor.
    """

    noise_kind = "gaussian"  # directions in z-space

    def __init__(self, space, dim: int, seed: int = 0, scale: float | None = None, cache_limit: int = CACHE_LIMIT):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"subspace dim must be an integer >= 1, got {dim!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"subspace seed must be an int, got {seed!r}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not math.isfinite(scale) or scale <= 0):
            raise ValueError(f"subspace scale must be a finite number > 0 or None (theta0's spread), got {scale!r}")
        for need in ("state_dict", "load_state_dict", "fingerprint"):
            if not callable(getattr(space, need, None)):
                raise ValueError(f"subspace needs a space with {need}() (a ParamSpace), got {type(space).__name__}")
        self.space, self.dim, self.seed, self.scale = space, dim, seed, scale
        self.base = space.state_dict()  # theta0, float32 CPU copies (the only dense copy this class keeps)
        numel = sum(t.numel() for t in self.base.values())
        if dim > numel:
            raise ValueError(f"subspace dim {dim} exceeds the {numel} numbers of the space it reparametrises")
        self.scales = self._scales()
        self.z = torch.zeros(dim, dtype=torch.float32)
        self.cache = numel * dim <= cache_limit
        self._proj: dict[str, torch.Tensor] = {}
        self._base_fingerprint = space.fingerprint()

    def _scales(self) -> dict[str, float]:
        """s_t per tensor: the given scale, else std(theta0_t), else the std over the whole space."""
        if self.scale is not None:
            return {n: float(self.scale) for n in self.base}
        flat = torch.cat([t.reshape(-1) for t in self.base.values()]).double()
        overall = float(flat.std()) if flat.numel() > 1 else 0.0
        if not overall > 0:  # every value equal (norm weights at 1): their size, sqrt(mean theta0^2)
            overall = float(flat.pow(2).mean().sqrt())
        if not (overall > 0 and math.isfinite(overall)):
            raise ValueError("subspace: the wrapped space's initial values are all zero (e.g. new steering vectors): "
                             "pass scale=S, the per-coordinate std of A z for z ~ N(0, I_d)")
        out = {}
        for name, t in self.base.items():
            s = float(t.double().std()) if t.numel() > 1 else 0.0
            out[name] = s if s > 0 and math.isfinite(s) else overall
        return out

    # --- the projection -----------------------------------------------------------------------------
    def block_rows(self) -> int:
        return max(1, BLOCK // self.dim)

    def projection(self, name: str) -> torch.Tensor:
        """A's rows for tensor `name`, [numel, d] float32: blocks of whole rows, each drawn from its own generator
        seeded by (seed, name, d, block), so A depends only on (seed, d, tensor names and sizes) and the scales."""
        if name in self._proj:
            return self._proj[name]
        numel, rows = self.base[name].numel(), self.block_rows()
        out = torch.empty(numel, self.dim, dtype=torch.float32)
        std = self.scales[name] / math.sqrt(self.dim)  # A_ij ~ N(0, s_t^2 / d): (A z)_i ~ N(0, s_t^2) for z ~ N(0, I)
        for b, lo in enumerate(range(0, numel, rows)):
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "subspace", name, self.dim, b))
            block = out[lo:lo + rows]
            block.normal_(generator=gen).mul_(std)
        if self.cache:
            self._proj[name] = out
        return out

    def _write(self) -> None:
        """theta = theta0 + A z, recomputed from z every time (no drift from accumulated increments)."""
        theta = {}
        for name, t0 in self.base.items():
            delta = torch.mv(self.projection(name), self.z)  # (A z) restricted to this tensor's rows
            theta[name] = (t0.reshape(-1) + delta).view_as(t0)
        self.space.load_state_dict(theta)

    # --- dense access (CMA-ES) ----------------------------------------------------------------------
    def vector(self) -> torch.Tensor:
        """A copy of z."""
        return self.z.clone()

    def set_vector(self, z) -> None:
        """z <- the given d numbers; the wrapped weights follow."""
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
        if z.numel() != self.dim:
            raise ValueError(f"set_vector: got {z.numel()} numbers, the subspace has dim {self.dim}")
        self.z.copy_(z)
        self._write()

    # --- Backend contract ---------------------------------------------------------------------------
    @property
    def tensors(self) -> dict:
        """The wrapped space's live tensors (what the model sees; the trunk cache reads their names)."""
        return self.space.tensors

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # z and its directions live on the CPU whatever device the weights are on

    def numel(self) -> int:
        return self.dim

    def generator_id(self) -> str:
        return f"{generator_id('cpu')}-subspace"

    def apply(self, pairs: Sequence[tuple[int, float]]) -> None:
        """z <- z + sum_i c_i u(seed_i) (u: d-dim seeded directions), then theta = theta0 + A z."""
        merged = merge_pairs(pairs)
        if not merged:
            return
        for seed, coeff in merged:
            add_noise_(self.z, seed, Z_NAME, coeff)
        self._write()

    def decay(self, factor: float) -> None:
        """z <- factor * z: decay pulls theta towards theta0, the point the subspace is centred on."""
        self.z.mul_(factor)
        self._write()

    def map_dense(self, pairs: Sequence[tuple[int, float]], fn: Callable[[str, torch.Tensor, torch.Tensor], None]) -> None:
        """Dense optimizers (adam, momentum): fn(name, z, g) with g = sum_i c_i u(seed_i) in z-space."""
        g = torch.zeros(self.dim, dtype=torch.float32)
        for seed, coeff in merge_pairs(pairs):
            add_noise_(g, seed, Z_NAME, coeff)
        fn(Z_NAME, self.z, g)
        self._write()

    def fingerprint(self) -> str:
        """Digest of theta0's fingerprint, the projection (seed, d, scale) and z."""
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{self._base_fingerprint}:{self.dim}:{self.seed}:{self.scale}".encode())
        h.update(self.z.numpy().tobytes())
        return h.hexdigest()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The full theta of the wrapped space (what an export saves), not z."""
        return self.space.state_dict()

    def describe(self) -> dict:
        return {"subspace_dim": self.dim, "subspace_seed": self.seed, "scale": self.scale or "std(theta0) per tensor",
                "wrapped_numel": sum(t.numel() for t in self.base.values())}


def subspace(space, dim: int, seed: int = 0, scale: float | None = None) -> Subspace:
    """`space` reparametrised as theta0 + A z with z of `dim` numbers (see Subspace for A's scale)."""
    return Subspace(space, dim, seed, scale)
