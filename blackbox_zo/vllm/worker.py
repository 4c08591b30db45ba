"""Code that runs inside vLLM's worker processes: seeded in-place moves of the live model weights.

Loaded by name (`LLM(worker_extension_cls="blackbox_zo.vllm.worker.ZOWorkerExtension")`) and
driven through `llm.collective_rpc("zo_...", args=(seed, coeff, ...))`: only seeds and scalars cross
the process boundary. Each vLLM parameter is mapped to the canonical Hugging Face tensors it holds
(fused `qkv_proj` = q, k, v rows; `gate_up_proj` = gate, up rows; tensor-parallel shards), so the
noise added here equals, element for element, the noise `blackbox_zo.weights.params.ParamSpace` adds to a
plain transformers model with the same seed.

Trap 1 (CPU): vLLM's CPU platform repacks every linear weight into a oneDNN / SGL kernel handle and
replaces the parameter by an empty tensor, so in-place updates would silently miss ~80% of the model
(and the tied lm_head would keep a stale packed copy of the embedding). Importing this module
replaces `vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm` by a dispatch to plain
`F.linear` on the live weight. vLLM imports that function lazily at weight-processing time, and
this module is imported by the worker before it loads the model, so the patch takes effect there.
Set BLACKBOX_ZO_VLLM_KEEP_REPACK=1 to switch it off (tests use this to show the coverage check fires).
"""

from __future__ import annotations

import inspect
import math
import os
import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from blackbox_zo.weights.noise import CHUNK, add_noise_, noise_slice

KEEP_REPACK_ENV = "BLACKBOX_ZO_VLLM_KEEP_REPACK"
_ORIGINAL_DISPATCH = None


def live_weight_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The CPU gemm we install: reads `layer.weight` at every call, so in-place updates are seen."""
    return F.linear(x, weight, bias)


def _live_weight_dispatch(layer: torch.nn.Module, remove_weight: bool) -> None:
    """Drop-in for vLLM's `dispatch_cpu_unquantized_gemm(layer, remove_weight)`: keep the weight live."""
    if os.environ.get(KEEP_REPACK_ENV) == "1" and _ORIGINAL_DISPATCH is not None:
        return _ORIGINAL_DISPATCH(layer, remove_weight)
    layer.cpu_linear = live_weight_linear


def install_live_weight_gemm() -> bool:
    """Patch vLLM's CPU gemm dispatch (idempotent). False when vLLM or the function is absent."""
    global _ORIGINAL_DISPATCH
    try:
        from vllm.model_executor.layers import utils as vllm_utils
    except Exception:  # vLLM not installed: the module is still importable for docs and tests
        return False
    current = getattr(vllm_utils, "dispatch_cpu_unquantized_gemm", None)
    if current is None:
        return False
    if current is _live_weight_dispatch:
        return True
    params = list(inspect.signature(current).parameters)
    if params != ["layer", "remove_weight"]:
        raise RuntimeError(
            "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm has signature "
            f"{params}, expected ['layer', 'remove_weight']; the CPU live-weight workaround "
            "must be updated for this vLLM version"
        )
    _ORIGINAL_DISPATCH = current
    vllm_utils.dispatch_cpu_unquantized_gemm = _live_weight_dispatch
    return True


LIVE_WEIGHT_PATCH = install_live_weight_gemm()


@dataclass
class Segment:
    """Rows [lrow, lrow+nrows) x cols [lcol, lcol+ncols) of a vLLM parameter hold canonical tensor
    `name` (shape `shape`) rows [crow, crow+nrows) x cols [ccol, ccol+ncols)."""

    vname: str
    param: torch.Tensor
    name: str
    shape: tuple
    lrow: int
    crow: int
    nrows: int
    ccol: int
    ncols: int
    owner: bool  # counts for coverage/export (replicated tensors: rank 0 only)
    ccol_local: int = 0  # first column in the vLLM parameter (column shards hold only their columns)

    @property
    def numel(self) -> int:
        return self.nrows * self.ncols

    @property
    def row_len(self) -> int:
        return math.prod(self.shape[1:])  # elements per canonical row (1 for vectors)

    def full_rows(self) -> bool:
        return self.ncols == self.row_len

    def local(self) -> torch.Tensor:
        """The vLLM-side view (2-D: nrows x ncols; 1-D tensors as nrows x 1)."""
        p = self.param.data
        if p.ndim == 1:
            return p[self.lrow : self.lrow + self.nrows].view(-1, 1)
        p2 = p.view(p.shape[0], -1)
        return p2[self.lrow : self.lrow + self.nrows, self.ccol_local : self.ccol_local + self.ncols]


def _tp_rank_size() -> tuple[int, int]:
    try:
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

        return get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()
    except Exception:
        return 0, 1


def map_parameters(model: torch.nn.Module, canonical: dict[str, tuple], rank: int = 0, tp: int = 1):
    """Segments of every live vLLM parameter, canonical names left uncovered, and dead (repacked) params."""
    packed = dict(getattr(model, "packed_modules_mapping", {}) or {})
    segments: list[Segment] = []
    dead: list[str] = []
    problems: list[str] = []
    for vname, p in model.named_parameters():
        parts = vname.split(".")
        module, leaf = (parts[-2], parts[-1]) if len(parts) >= 2 else ("", parts[-1])
        if module in packed:
            comps = [".".join(parts[:-2] + [sub, leaf]) for sub in packed[module]]
        else:
            comps = [vname]
        comps = [c for c in comps if c in canonical]
        if not comps:
            if p.numel() == 0:
                dead.append(vname)
            else:
                problems.append(f"{vname} {tuple(p.shape)}: no canonical tensor")
            continue
        if p.numel() == 0:  # trap 1: the weight was repacked into a kernel handle and removed
            dead.append(vname)
            continue
        lrow = 0
        for c in comps:
            shape = tuple(canonical[c])
            rows = shape[0]
            cols = math.prod(shape[1:])
            prow = p.shape[0]
            pcols = p.numel() // prow if prow else 0
            if len(comps) > 1:  # fused: each component contributes rows/tp rows of this rank's shard
                if rows % tp:
                    problems.append(f"{vname}: {c} rows {rows} not divisible by tp={tp}")
                    break
                n = rows // tp
                seg = Segment(vname, p, c, shape, lrow, rank * n, n, 0, cols, True)
                lrow += n
            elif pcols == cols and prow >= rows and tp == 1:  # whole (vocab padding rows ignored)
                seg = Segment(vname, p, c, shape, 0, 0, rows, 0, cols, True)
            elif pcols == cols and prow == rows:  # replicated across tp ranks (norms)
                seg = Segment(vname, p, c, shape, 0, 0, rows, 0, cols, rank == 0)
            elif pcols == cols:  # row shard (column-parallel / vocab-parallel, maybe padded)
                crow = rank * prow
                n = max(0, min(rows, crow + prow) - crow)
                seg = Segment(vname, p, c, shape, 0, crow, n, 0, cols, True)
            elif prow == rows and cols % tp == 0 and pcols == cols // tp:  # column shard (row-parallel)
                seg = Segment(vname, p, c, shape, 0, 0, rows, rank * pcols, pcols, True)
            else:
                problems.append(f"{vname} {tuple(p.shape)} does not fit {c} {shape} (tp={tp})")
                continue
            segments.append(seg)
        if len(comps) > 1 and lrow != p.shape[0]:
            problems.append(f"{vname}: components {comps} cover {lrow} of {p.shape[0]} rows")
    return segments, dead, problems


def add_segment_noise_(seg: Segment, seed: int, coeff: float, kind: str, target: torch.Tensor | None = None) -> None:
    """target += coeff * z(seed)[canonical slice of seg]; target defaults to the live view seg.local()
    (a float32 master copy of the same 2-D shape otherwise). Whole rows go through add_noise_ directly."""
    numel = math.prod(seg.shape)
    if seg.numel == 0 or coeff == 0.0:
        return
    local = seg.local() if target is None else target
    if seg.full_rows():
        flat = local.reshape(-1)  # a view: whole rows of a row-major tensor are contiguous
        add_noise_(flat, seed, seg.name, coeff, numel=numel, start=seg.crow * seg.row_len, kind=kind)
        return
    # column shard: draw whole canonical rows, keep this rank's columns, a block of rows at a time
    step = max(1, CHUNK // seg.row_len)
    for r in range(0, seg.nrows, step):
        r1 = min(seg.nrows, r + step)
        lo = (seg.crow + r) * seg.row_len
        z = noise_slice(seed, seg.name, numel, lo, lo + (r1 - r) * seg.row_len, kind, local.device)
        z = z.view(r1 - r, seg.row_len)[:, seg.ccol : seg.ccol + seg.ncols]
        local[r:r1].add_(z.to(local.dtype), alpha=coeff)


class ZOWorkerExtension:
    """Mixed into vLLM's worker class; every public method is reachable with collective_rpc.

    theta lives in the live weights (float32 engines) or in float32 master copies that the live
    low-precision weights round from after every change (bf16/fp16 engines: no random-walk drift).
    """

    def zo_init(self, canonical: dict, noise_kind: str = "gaussian", master_weights: bool | None = None) -> dict:
        """Map live parameters to canonical tensors; report coverage, dead params and patch status."""
        model = self.model_runner.get_model()
        rank, tp = _tp_rank_size()
        segments, dead, problems = map_parameters(model, {k: tuple(v) for k, v in canonical.items()}, rank, tp)
        self._zo_segments = segments
        self._zo_kind = noise_kind
        self._zo_snapshots = {}
        if master_weights is None:
            master_weights = any(s.param.dtype != torch.float32 for s in segments)
        self._zo_masters = [s.local().float().clone() for s in segments] if master_weights else None
        covered: dict[str, int] = {}
        for s in segments:
            if s.owner:
                covered[s.name] = covered.get(s.name, 0) + s.numel
        stale = [
            n
            for n, m in model.named_modules()
            if hasattr(m, "cpu_linear") and m.cpu_linear is not live_weight_linear
        ]
        from vllm.model_executor.layers import utils as vllm_utils

        return {
            "rank": rank,
            "tp": tp,
            "segments": len(segments),
            "covered": covered,
            "dead_params": dead,
            "problems": problems,
            "patch_installed": vllm_utils.dispatch_cpu_unquantized_gemm is _live_weight_dispatch,
            "stale_gemm_layers": stale,
            "dtypes": sorted({str(s.param.dtype) for s in segments}),
            "master_weights": bool(master_weights),
        }

    def _zo_store(self, i: int) -> torch.Tensor:
        """Where theta of segment i lives: its float32 master, or the live view itself."""
        return self._zo_masters[i] if self._zo_masters is not None else self._zo_segments[i].local()

    def _zo_sync(self, i: int) -> None:
        if self._zo_masters is not None:
            self._zo_segments[i].local().copy_(self._zo_masters[i])  # live = round(master)

    def zo_apply(self, pairs: list, noise_kind: str | None = None) -> None:
        """theta <- theta + sum_i c_i z(seed_i); pairs are already merged by the driver."""
        kind = noise_kind or self._zo_kind
        if self._zo_segments and self._zo_segments[0].param.is_cuda:  # CPU workers never import triton
            from blackbox_zo.weights.noise_kernel import use_kernel

            if use_kernel(self._zo_segments[0].param):
                return self._zo_apply_kernel(pairs, kind)
        with torch.no_grad():
            for i, seg in enumerate(self._zo_segments):  # same order as ParamSpace: per tensor, per seed
                store = self._zo_store(i)
                for seed, coeff in pairs:
                    add_segment_noise_(seg, int(seed), float(coeff), kind, store)
                self._zo_sync(i)

    def _zo_apply_kernel(self, pairs: list, kind: str) -> None:
        """GPU workers: one fused Philox pass per segment (all pairs, master and live copy), the stream ParamSpace uses on CUDA.

        Segment row r, column c is canonical element (crow + r) * row_len + ccol + c: start and canon_ld say so.
        """
        from blackbox_zo.weights.noise_kernel import kernel_jobs, run_kernel_jobs

        jobs = []
        for i, seg in enumerate(self._zo_segments):
            mirror = seg.local() if self._zo_masters is not None else None  # live = round(master), same pass
            start = seg.crow * seg.row_len + seg.ccol
            jobs += kernel_jobs(self._zo_store(i), seg.name, [(int(s), float(c)) for s, c in pairs], numel=math.prod(seg.shape),
                                start=start, kind=kind, mirror=mirror, canon_ld=seg.row_len)
        run_kernel_jobs(jobs)

    def zo_decay(self, factor: float) -> None:
        """theta <- factor * theta for matrices (canonical ndim >= 2)."""
        with torch.no_grad():
            for i, seg in enumerate(self._zo_segments):
                if len(seg.shape) >= 2:
                    self._zo_store(i).mul_(factor)
                    self._zo_sync(i)

    def zo_snapshot(self, key: str = "user") -> int:
        """Keep a copy of theta under `key` (one model's worth of memory per key)."""
        self._zo_snapshots = getattr(self, "_zo_snapshots", {})
        self._zo_snapshots[key] = [self._zo_store(i).clone() for i in range(len(self._zo_segments))]
        return sum(t.numel() for t in self._zo_snapshots[key])

    def _zo_saved(self, key: str) -> list:
        saved = getattr(self, "_zo_snapshots", {}).get(key)
        if saved is None:
            raise RuntimeError(f"no weight snapshot {key!r}: call zo_snapshot({key!r}) first")
        return saved

    def zo_restore_snapshot(self, key: str = "user", drop: bool = True) -> None:
        with torch.no_grad():
            for i, saved in enumerate(self._zo_saved(key)):
                self._zo_store(i).copy_(saved)
                self._zo_sync(i)
        if drop:
            del self._zo_snapshots[key]

    def zo_diff_from_snapshot(self, key: str = "user", live: bool = False) -> dict:
        """Owned elements of theta (or of the live weights) that differ from the snapshot."""
        changed, max_abs, sq, n = 0, 0.0, 0.0, 0
        for i, (seg, saved) in enumerate(zip(self._zo_segments, self._zo_saved(key))):
            if not seg.owner:
                continue
            now = seg.local() if live else self._zo_store(i)
            d = now.double() - saved.to(now.dtype).double()
            changed += int((d != 0).sum())
            if d.numel():
                max_abs = max(max_abs, float(d.abs().max()))
            sq += float(d.pow(2).sum())
            n += d.numel()
        return {"changed": changed, "max_abs": max_abs, "sum_sq": sq, "elements": n}

    def zo_count_perturbed(self, seed: int, scale: float, kind: str = "rademacher") -> dict:
        """Live weight elements that a perturbation changes; theta is restored bit-exactly after."""
        self.zo_snapshot("coverage")
        self.zo_apply([(seed, scale)], kind)
        report = self.zo_diff_from_snapshot("coverage", live=True)
        self.zo_restore_snapshot("coverage")
        return report

    def zo_export(self, directory: str) -> list:
        """Write this rank's owned segments of theta to a safetensors file; return [path, index]."""
        from safetensors.torch import save_file

        rank, _ = _tp_rank_size()
        tensors, index = {}, []
        for i, seg in enumerate(self._zo_segments):
            if not seg.owner or seg.numel == 0:
                continue
            key = f"{i}"
            tensors[key] = self._zo_store(i).detach().to(torch.float32).contiguous().clone()
            index.append((key, seg.name, seg.crow, seg.nrows, seg.ccol, seg.ncols))
        fd, path = tempfile.mkstemp(prefix=f"rank{rank}-", suffix=".safetensors", dir=directory)
        os.close(fd)
        save_file(tensors, path)
        return [path, index]

    def zo_fingerprint(self) -> str | None:
        """fingerprint_tensors over canonical views of theta; None when tensors are split (tp > 1)."""
        from blackbox_zo.weights.params import fingerprint_tensors

        _, tp = _tp_rank_size()
        views: dict[str, torch.Tensor] = {}
        for i, seg in enumerate(self._zo_segments):
            if tp > 1 or not seg.full_rows() or seg.crow != 0 or seg.nrows != seg.shape[0]:
                return None
            views[seg.name] = self._zo_store(i).reshape(seg.shape)
        return fingerprint_tensors(views)
