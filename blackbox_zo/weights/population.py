"""A population's perturbations applied at use time: every member's rows in one batched forward, weights untouched.

EGGROLL (arXiv 2511.16652) never forms W + E: a layer computes x W^T + s (x V) U^T for the rows of the member
whose direction is E = s U V^T. Here the members are the estimator's points (theta + sum_k s_k z(seed_k)), the
factors come from the same (seed, tensor name) rule as the in-place path, and forward hooks add each member's
offset to the outputs of the modules that use a tuned tensor. The LM repeats a batch once per member and
tags the rows (`rows`); a plain closure that knows nothing of members sees the `selected` member on every row.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import weakref
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from blackbox_zo.weights.lowrank import as_matrix, draw_factors
from blackbox_zo.weights.noise import noise_slice

_ACTIVE: contextvars.ContextVar[Population | None] = contextvars.ContextVar("blackbox_zo_population", default=None)
DENSE_LIMIT = 1 << 18  # elements: a tensor this small gets a dense per-member offset (LoRA factors, norms, vectors)
OWN_OFFSETS = "_bz_reads_own_offsets"  # set on a parameter whose module adds its offsets itself (steering, prefix)
# norm module -> {parameter: whether f(p) = p * g(x)}, so g(x) = f(p) / p needs no extra call (weak: modules die)
_SCALES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

Point = Sequence[tuple[int, float]]


def active() -> Population | None:
    """The population being evaluated in this context, or None (the weights are what the model sees)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Inside the block no population applies: forwards see the weights as they are (a reference model's read)."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def reads_own_offsets(param: torch.Tensor) -> torch.Tensor:
    """Mark a parameter whose user calls `row_offsets(param)` itself (no hook is installed for it)."""
    setattr(param, OWN_OFFSETS, True)
    return param


def row_offsets(param: torch.Tensor, rows: int) -> torch.Tensor | None:
    """[rows, *param.shape] offsets of each row's member for a parameter that reads its own, or None outside a population."""
    pop = active()
    return None if pop is None else pop.offsets_for(param, rows)


def _is_norm(module: nn.Module) -> bool:
    return type(module).__name__.endswith("Norm") or isinstance(module, (nn.LayerNorm, nn.GroupNorm))


def _is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): y = x W + b with W stored [in, out]."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def uses(module: nn.Module, tensors: dict[str, torch.Tensor]) -> list[tuple[nn.Module, str, str]]:
    """(module, attribute, tuned name) for every module attribute that IS a tuned tensor (tied weights: several)."""
    by_id = {id(t): name for name, t in tensors.items()}
    found = []
    for sub in module.modules():
        for attr, p in sub._parameters.items():
            if p is not None and id(p) in by_id:
                found.append((sub, attr, by_id[id(p)]))
    return found


def rule_for(module: nn.Module, attr: str, tensor: torch.Tensor, lowrank: bool) -> str | None:
    """How a tensor's use is perturbed per row: 'own', 'linear', 'embedding', 'conv1d', 'norm'; None: not possible."""
    if getattr(tensor, OWN_OFFSETS, False):
        return "own"
    small = tensor.numel() <= DENSE_LIMIT
    if attr == "weight" and tensor.ndim == 2 and (lowrank or small):
        if isinstance(module, nn.Linear):
            return "linear"
        if isinstance(module, nn.Embedding) and lowrank:  # a dense vocab x dim offset per member is too large
            return "embedding"
        if _is_conv1d(module):
            return "conv1d"
    if attr == "bias" and (isinstance(module, nn.Linear) or _is_conv1d(module)) and small:
        return "bias"
    if attr in ("weight", "bias") and _is_norm(module) and small:
        return "norm"
    return None


def unsupported(module: nn.Module, tensors: dict[str, torch.Tensor], lowrank: bool) -> list[str]:
    """Names of tuned tensors whose use cannot be perturbed per row (then the space evaluates in place)."""
    seen = {name for _, _, name in uses(module, tensors)}
    bad = [name for sub, attr, name in uses(module, tensors) if rule_for(sub, attr, tensors[name], lowrank) is None]
    return sorted(set(bad) | (set(tensors) - seen))


class Population:
    """The members of one step (points theta + sum_k s_k z(seed_k)) as per-row offsets, hooked into a module.

    `select(i)` picks the member a plain evaluation sees; an LM that batches members sets `rows` (the member of
    each row) around its forward. Factors are drawn once per tensor and kept for the population's lifetime.
    """

    def __init__(self, space, points: Sequence[Point], module: nn.Module):
        self.space, self.module = space, module
        self.points = [list(p) for p in points]
        self.n = len(self.points)
        self.selected = 0
        self.rows: torch.Tensor | None = None
        self.block: tuple[int, int] | None = None  # (first member, members) when rows are member-major blocks
        self.cache: dict[Any, Any] = {}  # what an LM computed for all members, keyed by its call
        self._lowrank: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._dense: dict[str, torch.Tensor] = {}
        self._names = {id(t): n for n, t in space.tensors.items()}
        self._term_cache: dict = {}
        self._norms: set[str] = set()  # tensors hooked with the norm rule
        self._nonzero: dict[str, bool] | None = None
        self._ratios: dict[str, torch.Tensor] = {}  # norm name -> [n, *shape] 1 + d_i / p, where f(p) = p g(x)

    def select(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise IndexError(f"member {i} of a population of {self.n}")
        self.selected = i

    # --- per-member offsets, drawn from the same (seed, name) rule as ParamSpace.apply ---------------------
    def _terms(self, device) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """(distinct seeds, index [n, K] of each member's k-th seed among them, coefficient [n, K]; 0 pads short points).

        Built once per device for the population (two host-to-device copies, not one per tensor and entry)."""
        if device not in self._term_cache:
            seeds = list(dict.fromkeys(seed for point in self.points for seed, _ in point))  # antithetic points share one
            width = max((len(p) for p in self.points), default=1) or 1
            at = {seed: j for j, seed in enumerate(seeds)}
            index = [[at[seed] for seed, _ in point] + [0] * (width - len(point)) for point in self.points]
            coeff = [[float(c) for _, c in point] + [0.0] * (width - len(point)) for point in self.points]
            self._term_cache[device] = (seeds, torch.tensor(index, dtype=torch.long).to(device, non_blocking=True),
                                        torch.tensor(coeff, dtype=torch.float32).to(device, non_blocking=True))
        return self._term_cache[device]

    def lowrank_factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(U [n, rows, K], V [n, cols, K]) with member i's direction sum_k s_k U_k V_k^T / sqrt(r) = U[i] V[i]^T."""
        if name not in self._lowrank:
            self._lowrank.update(self._all_factors(self.space.tensors[name].device))
        return self._lowrank[name]

    def _all_factors(self, device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Every matrix's member tables on `device` from one gather per side over all of them, split into views.

        2 x 211 small gathers and copies a step (SmolLM2) became 2 big ones: with 2 threads each small op paid a
        thread hand-off, and the copies went to the allocator one by one."""
        mats = {n: as_matrix(t).shape for n, t in self.space.tensors.items() if t.ndim >= 2 and t.device == device}
        r, (seeds, index, coeff) = self.space.rank, self._terms(device)
        if any(self.space.drawn.get(n, (None,))[0] != seeds for n in mats):  # every matrix at once: a few launches on CUDA
            self.space.drawn.update(draw_factors([(n, *shape, seeds) for n, shape in mats.items()], r, device))
        u_all = torch.cat([self.space.drawn[n][1] for n in mats], dim=1)  # [S, sum rows, r]
        v_all = torch.cat([self.space.drawn[n][2] for n in mats], dim=1)  # [S, sum cols, r]
        scale = (coeff / math.sqrt(r))[:, :, None, None]  # E_i = sum_k (s_k / sqrt(r)) U_k V_k^T
        u = (u_all[index] * scale).transpose(1, 2).reshape(self.n, u_all.shape[1], -1)  # [n, sum rows, K r]
        v = (v_all[index] * (coeff != 0)[:, :, None, None]).transpose(1, 2).reshape(self.n, v_all.shape[1], -1)
        dtypes = {self.space.tensors[n].dtype for n in mats}  # the layers' compute dtype, cast once, not per forward
        if len(dtypes) == 1:
            u, v = u.to(*dtypes), v.to(*dtypes)
        us, vs = u.split([s[0] for s in mats.values()], dim=1), v.split([s[1] for s in mats.values()], dim=1)
        return {n: (a.to(self.space.tensors[n].dtype), b.to(self.space.tensors[n].dtype)) for n, a, b in zip(mats, us, vs)}

    def dense_offsets(self, name: str) -> torch.Tensor:
        """[n, *shape] float32: member i's offset sum_k s_k z(seed_k) of tensor `name`, drawn elementwise."""
        if name not in self._dense:
            t = self.space.tensors[name]
            kind = "gaussian" if self.space.rank is not None else self.space.noise_kind
            seeds, index, coeff = self._terms(t.device)
            z = torch.stack([noise_slice(seed, name, t.numel(), 0, t.numel(), kind, t.device) for seed in seeds])
            out = z[index[:, 0]] * coeff[:, :1]  # sum_k s_k z_k, term by term
            for k in range(1, index.shape[1]):
                out.addcmul_(z[index[:, k]], coeff[:, k:k + 1])
            self._dense[name] = out.view(self.n, *t.shape)
        return self._dense[name]

    def members(self, batch: int) -> torch.Tensor | None:
        """The member of each of `batch` rows, or None when every row is the selected member."""
        if self.rows is None:
            return None
        if self.rows.numel() != batch:
            raise RuntimeError(f"population: a forward of {batch} rows inside a call tagged for {self.rows.numel()} rows "
                               "(a module changed the batch size; evaluate this model with evaluate='inplace')")
        return self.rows

    def per_row(self, table: torch.Tensor, batch: int) -> torch.Tensor:
        """table[member of row] for each row: [batch, ...] (the selected member's entry broadcast when untagged)."""
        m = self.members(batch)
        return table[self.selected].unsqueeze(0).expand(batch, *table.shape[1:]) if m is None else table[m.to(table.device)]

    def times(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Each row of x [B, ..., d] times its member's matrix table[m] [d, e]: [B, T, e].

        Untagged rows all use the selected member (one matmul); member-major blocks of equal size (how an LM
        repeats its batch) are one bmm over members without gathering; other tags gather a matrix per row."""
        b = x.shape[0]
        flat = x.reshape(b, -1, x.shape[-1])
        m = self.members(b)
        if m is None:
            return flat @ table[self.selected].to(x.dtype)
        if self.block is not None:
            first, k = self.block
            grouped = flat.reshape(k, -1, flat.shape[-1])  # [k, (B / k) T, d]: member first + j in block j
            return torch.bmm(grouped, table[first:first + k].to(x.dtype)).reshape(b, flat.shape[1], -1)
        return torch.bmm(flat, table[m.to(table.device)].to(x.dtype))

    def add_lowrank_(self, out: torch.Tensor, x: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """out += (x @ left[m]) @ right[m] for each row's member m, written into `out` where autograd allows.

        (x V) has K = r columns, so the product costs about K (d + e) / (d e) of the layer itself; accumulating
        into the output with addmm_/baddbmm_ avoids materialising the [B, T, e] offset (2.5x less time here)."""
        xl = self.times(x, left)  # [B, T, K]
        if torch.is_grad_enabled() or out.dtype != xl.dtype:
            return out + self.times(xl, right).view_as(out).to(out.dtype)
        b, width = out.shape[0], out.shape[-1]
        m = self.members(b)
        if m is None:
            out.view(-1, width).addmm_(xl.reshape(-1, xl.shape[-1]), right[self.selected].to(out.dtype))
        elif self.block is not None:
            first, k = self.block
            out.view(k, -1, width).baddbmm_(xl.reshape(k, -1, xl.shape[-1]), right[first:first + k].to(out.dtype))
        else:
            out.view(b, -1, width).baddbmm_(xl, right[m.to(right.device)].to(out.dtype))
        return out

    def scale_rows_(self, out: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """out * table[m] along the last dimension for each row's member m, in place where autograd allows."""
        b, width = out.shape[0], out.shape[-1]
        m = self.members(b)
        in_place = not torch.is_grad_enabled()
        if m is None:
            factor = table[self.selected].to(out.dtype)
            return out.mul_(factor) if in_place else out * factor
        if self.block is not None:
            first, k = self.block
            grouped, factor = out.view(k, -1, width), table[first:first + k, None, :].to(out.dtype)
        else:
            grouped, factor = out.view(b, -1, width), table[m.to(table.device)][:, None, :].to(out.dtype)
        return (grouped.mul_(factor) if in_place else grouped * factor).view_as(out)

    def offsets_for(self, param: torch.Tensor, batch: int) -> torch.Tensor:
        return self.per_row(self.dense_offsets(self._names[id(param)]), batch)

    # --- hooks -----------------------------------------------------------------------------------------
    def hook(self, module: nn.Module, attr: str, name: str, rule: str) -> Callable:
        lowrank = self.space.rank is not None and self.space.tensors[name].ndim >= 2

        def linear(mod, args, out):
            x = args[0]
            if lowrank:  # x W^T + x (U V^T)^T = x W^T + (x V) U^T
                u, v = self.lowrank_factors(name)
                return self.add_lowrank_(out, x, v, u.transpose(1, 2))
            else:  # x (W + D)^T = x W^T + x D^T, D dense and small
                delta = self.times(x, self.dense_offsets(name).transpose(1, 2))
            return out + delta.view_as(out).to(out.dtype)

        def conv1d(mod, args, out):  # y = x W + b, W [in, out]: x (W + U V^T) = x W + (x U) V^T
            x = args[0]
            if lowrank:
                u, v = self.lowrank_factors(name)
                return self.add_lowrank_(out, x, u, v.transpose(1, 2))
            else:
                delta = self.times(x, self.dense_offsets(name))
            return out + delta.view_as(out).to(out.dtype)

        def embedding(mod, args, out):  # row t of W + U V^T: W[t] + U[t] V^T, gathered per member
            ids = args[0]
            b = ids.shape[0]
            u, v = self.lowrank_factors(name)
            m = self.members(b)
            member = torch.full((b,), self.selected, device=ids.device) if m is None else m.to(ids.device)
            picked = u[member.unsqueeze(1), ids.reshape(b, -1)]  # [b, T, K]
            delta = torch.bmm(picked, v[member].transpose(1, 2))  # [b, T, dim]
            return out + delta.view_as(out).to(out.dtype)

        def bias(mod, args, out):  # y + d_bias for each row's member
            b = out.shape[0]
            d = self.per_row(self.dense_offsets(name), b).to(out.dtype)
            return out + d.view(b, *([1] * (out.ndim - 2)), -1)

        probing = []  # set while the norm runs again below (functional_call runs this hook too)

        def rerun(mod, x, value: float) -> torch.Tensor:
            params = dict(mod.named_parameters(recurse=False))
            probing.append(True)
            try:
                return torch.func.functional_call(mod, {**params, attr: torch.full_like(params[attr], value)}, (x,))
            finally:
                probing.clear()

        def norm(mod, args, out):  # affine in its parameter: f(p + d) = f(p) + (f(1) - f(0)) * d, elementwise
            if probing:
                return None
            x, b = args[0], args[0].shape[0]
            p = getattr(mod, attr)
            known = _SCALES.setdefault(mod, {})
            if attr not in known:  # decided once per module: is f(p) = p * f(1) (RMSNorm's weight)?
                slope = rerun(mod, x, 1.0)
                known[attr] = bool(torch.allclose(out, slope * p.to(out.dtype), rtol=1e-3, atol=1e-5) and
                                   not rerun(mod, x, 0.0).any())
            if known[attr] and self.nonzero(name):  # f(p + d) = (p + d) g(x) = f(p) (1 + d / p): one multiply per row
                if name not in self._ratios:  # kept by the population: a re-entered visit reuses it
                    self._ratios[name] = 1 + self.dense_offsets(name) / p.float()
                return self.scale_rows_(out, self._ratios[name])
            slope = rerun(mod, x, 1.0) - rerun(mod, x, 0.0)
            d = self.per_row(self.dense_offsets(name), b).to(out.dtype)
            return out + slope * d.view(b, *([1] * (out.ndim - 2)), -1)

        offset = {"linear": linear, "conv1d": conv1d, "embedding": embedding, "bias": bias, "norm": norm}[rule]

        def applied(mod, args, out):
            if _ACTIVE.get() is not self:  # suspended(): this forward sees the weights as they are
                return None
            return offset(mod, args, out)

        return applied

    def nonzero(self, name: str) -> bool:
        """Whether every entry of norm tensor `name` is non-zero: decided for all norms at once, one host sync a population
        (the weights do not change while it is evaluated)."""
        if self._nonzero is None:
            names = sorted(self._norms)
            flags = torch.stack([self.space.tensors[n].detach().ne(0).all() for n in names]).tolist() if names else []
            self._nonzero = dict(zip(names, flags))
        return self._nonzero[name]

    def __enter__(self) -> Population:
        """Hooks on every module that uses a tuned tensor, and this population active (re-enterable per visit)."""
        self._handles = []
        self._token = _ACTIVE.set(self)
        try:
            for sub, attr, name in uses(self.module, self.space.tensors):
                rule = rule_for(sub, attr, self.space.tensors[name], self.space.rank is not None)
                if rule is None:
                    raise ValueError(f"tensor {name!r} ({type(sub).__name__}.{attr}) cannot be perturbed at use time: "
                                     "evaluate it in place (evaluate='inplace')")
                if rule == "norm":
                    self._norms.add(name)
                if rule != "own":
                    self._handles.append(sub.register_forward_hook(self.hook(sub, attr, name, rule)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        _ACTIVE.reset(self._token)

    @contextlib.contextmanager
    def tagged(self, members_per_row: torch.Tensor, block: tuple[int, int] | None = None) -> Iterator[None]:
        """Rows of the forwards inside the block belong to these members (an LM repeating its batch sets this);
        `block=(first, k)` says the rows are members first..first+k-1 in turn, equally many each."""
        before = self.rows, self.block
        self.rows, self.block = members_per_row, block
        try:
            yield
        finally:
            self.rows, self.block = before


def member_major(n_members: int, rows: int, device) -> torch.Tensor:
    """[0]*rows + [1]*rows + ...: the member of each row when a batch is repeated once per member."""
    return torch.arange(n_members, device=device).repeat_interleave(rows)


__all__ = ["Population", "active", "member_major", "reads_own_offsets", "row_offsets", "suspended", "uses",
           "unsupported"]
