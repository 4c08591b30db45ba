"""The fused Philox noise kernel, run on CPU under triton's interpreter: stream, slices, statistics, fusion, rounding."""

import math
import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton builds the kernel: CPU tensors, numpy semantics

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from blackbox_zo.vllm.worker import Segment, ZOWorkerExtension  # noqa: E402
from blackbox_zo.weights import noise  # noqa: E402
from blackbox_zo.weights import noise_kernel as nk  # noqa: E402

N = 200_000  # statistics: a 4-sigma band of a mean is 4 / sqrt(N) = 0.009


def z_of(seed: int, name: str, n: int = N, kind: str = "gaussian") -> torch.Tensor:
    return nk.kernel_slice(seed, name, n, 0, n, kind, device="cpu")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_same_inputs_same_noise_other_seed_or_name_other_noise():
    a = z_of(1, "w", 5000)
    assert torch.equal(a, z_of(1, "w", 5000))
    assert not torch.equal(a, z_of(2, "w", 5000)) and not torch.equal(a, z_of(1, "v", 5000))
    assert nk.kernel_key(1, "w") == noise.derive_seed(1, "w") < 2**63  # tl.randn takes it whole


def test_shards_and_fused_blocks_regenerate_their_slice_of_the_whole():
    rows, cols = 96, 130
    whole = z_of(4, "qkv", rows * cols).view(rows, cols)
    bottom = torch.zeros(40, cols)  # a row shard: canonical rows 56..95
    nk.add_noise_kernel_(bottom.view(-1), 4, "qkv", 1.0, numel=rows * cols, start=56 * cols)
    assert torch.equal(bottom, whole[56:])
    live = torch.zeros(rows + 16, 200)  # a vLLM-like buffer: a column shard (cols 30..99) stored at cols 10..79
    view = live[16:, 10:80]
    nk.run_kernel_jobs(nk.kernel_jobs(view, "qkv", [(4, 1.0)], numel=rows * cols, start=30, canon_ld=cols))
    assert torch.equal(view, whole[:, 30:100])
    assert live[:16].abs().sum() == 0 and live[:, :10].abs().sum() == 0 and live[:, 80:].abs().sum() == 0


def test_slices_at_every_offset_modulo_four_match_the_whole():
    """Elements 4g..4g+3 share counter g: a slice starting inside a group still gets exactly its elements."""
    whole = z_of(9, "w", 64)
    for start in range(8):
        for stop in (start + 1, start + 3, 61):
            part = nk.kernel_slice(9, "w", 64, start, stop, device="cpu")
            assert torch.equal(part, whole[start:stop]), (start, stop)


def test_worker_segments_get_the_canonical_noise_on_the_kernel_path():
    """vLLM layout: q and k stacked in one parameter, and a row-parallel column shard, master + bf16 live copy."""
    q_shape, k_shape, o_shape = (32, 24), (8, 24), (24, 32)
    qk = torch.zeros(40, 24, dtype=torch.bfloat16)
    o_shard = torch.zeros(24, 16, dtype=torch.bfloat16)  # rank 1 of tp=2 holds canonical columns 16..31
    segs = [Segment("qk", qk, "q", q_shape, 0, 0, 32, 0, 24, True), Segment("qk", qk, "k", k_shape, 32, 0, 8, 0, 24, True),
            Segment("o", o_shard, "o", o_shape, 0, 0, 24, 16, 16, True)]
    ext = ZOWorkerExtension()
    ext._zo_segments, ext._zo_masters = segs, [s.local().float().clone() for s in segs]
    ext._zo_apply_kernel([(7, 0.5), (8, -0.25)], "gaussian")
    for i, s in enumerate(segs):
        n = math.prod(s.shape)
        full = (0.5 * z_of(7, s.name, n) - 0.25 * z_of(8, s.name, n)).view(s.shape)[:, s.ccol : s.ccol + s.ncols]
        assert torch.allclose(ext._zo_masters[i], full, rtol=1e-6, atol=1e-7)
        assert torch.equal(s.local(), ext._zo_masters[i].to(torch.bfloat16))  # live = round-to-nearest(master)


def test_gaussian_mean_variance_and_correlations():
    z, other = z_of(11, "w"), z_of(12, "w")
    band = 4 / math.sqrt(N)
    assert abs(float(z.mean())) < band and abs(float(z.var()) - 1) < 4 * math.sqrt(2 / N)
    assert abs(corr(z, other)) < band  # two seeds: uncorrelated
    for lag in (1, 2, 3, 4):  # four neighbours share one Philox counter (its four words): still uncorrelated
        assert abs(corr(z[lag:], z[:-lag])) < band
        assert abs(corr(z[lag:] ** 2, z[:-lag] ** 2)) < band  # Box-Muller's pair shares a radius: not its squares
    assert abs(corr(z, z_of(11, "v"))) < band  # two tensors under one seed
    assert abs(float((z.abs() > 3).double().mean()) - 0.0027) < 0.0007  # the tails of N(0, 1), not a uniform's


def test_rademacher_is_plus_minus_one_and_balanced():
    r = z_of(3, "w", kind="rademacher")
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(float(r.mean())) < 4 / math.sqrt(N)
    assert abs(corr(r[1:], r[:-1])) < 4 / math.sqrt(N)


def test_fused_pairs_equal_sequential_application():
    """float32: bitwise (the kernel adds pair by pair in float32 registers, as separate launches do via memory).
    bf16 without masters: the fused pass rounds once, so it equals round(x + sum) bitwise and the sequential
    passes within 2 units in the last place of the largest partial sum (3 passes + 1 fused rounding, half an ulp each)."""
    pairs = [(1, 0.3), (2, -0.7), (3, 1e-3)]
    x = torch.randn(20_000)
    fused, seq = x.clone(), x.clone()
    nk.run_kernel_jobs(nk.kernel_jobs(fused, "w", pairs))
    for s, c in pairs:
        nk.add_noise_kernel_(seq, s, "w", c)
    assert torch.equal(fused, seq)
    ref = x.clone()
    for s, c in pairs:
        ref += c * z_of(s, "w", ref.numel())
    assert torch.allclose(fused, ref, rtol=1e-6, atol=1e-6)
    b = x.bfloat16()
    fused_b, seq_b = b.clone(), b.clone()
    nk.run_kernel_jobs(nk.kernel_jobs(fused_b, "w", pairs))
    for s, c in pairs:
        nk.add_noise_kernel_(seq_b, s, "w", c)
    exact, largest = b.float(), b.float().abs()
    for s, c in pairs:
        exact = exact + torch.tensor(c, dtype=torch.float32) * z_of(s, "w", exact.numel())
        largest = torch.maximum(largest, exact.abs())
    assert torch.equal(fused_b, exact.bfloat16())
    ulp = 2.0 ** (torch.frexp(largest).exponent.float() - 8)  # bf16 ulp of the largest partial sum
    assert ((seq_b.float() - fused_b.float()).abs() <= 2 * ulp).all() and not torch.equal(seq_b, fused_b)


def test_master_and_mirror_in_one_pass_and_mask_keeps_elements():
    master = torch.randn(10_000)
    mirror = master.bfloat16()
    keep = torch.rand(10_000) < 0.3
    before = master.clone()
    nk.run_kernel_jobs(nk.kernel_jobs(master, "w", [(5, 0.1)], mask=keep, mirror=mirror))
    assert torch.equal(mirror, master.bfloat16())
    assert torch.equal(master[~keep], before[~keep]) and (master[keep] != before[keep]).float().mean() > 0.99


@pytest.mark.parametrize("dtype, value, step", [(torch.bfloat16, 1.0, 2**-12), (torch.float16, 1.0, 2**-15),
                                                (torch.float16, 2**-20, 2**-29)])
def test_stochastic_rounding_is_unbiased_where_nearest_loses_the_update(dtype, value, step):
    """An update of 1/32 ulp (times z) at every element: nearest keeps none of it, stochastic rounding keeps it on average."""
    n = 100_000
    x = torch.full((n,), value, dtype=dtype)
    nearest, sr = x.clone(), x.clone()
    nk.run_kernel_jobs(nk.kernel_jobs(nearest, "w", [(9, step)]))
    nk.add_rounded_kernel_(sr, [(9, step)], "w", round_key=123)
    intended = step * z_of(9, "w", n)
    assert torch.equal(nearest, x)  # every update rounded away
    moved = sr.double() - value
    ulp = float(moved.abs().max())
    sigma = ulp * 0.5 / math.sqrt(n)  # each element's rounding error has sd <= ulp / 2
    assert abs(float(moved.mean() - intended.double().mean())) < 4 * sigma
    assert corr(moved, intended) > 0.15  # the rounding follows z: sqrt(step / (0.8 ulp)) ~ 0.2 (0 if bits ignored z)
    again = x.clone()
    nk.add_rounded_kernel_(again, [(9, step)], "w", round_key=123)
    assert torch.equal(again, sr)  # seeded: a replay rounds every element the same way


def test_device_selection_and_errors():
    assert noise.generator_id("cuda") == nk.STREAM != noise.generator_id("cpu")
    assert not any(isinstance(j, nk.KernelJob) for j in noise.noise_jobs(torch.zeros(10), "w", [(1, 1.0)]))
    with pytest.raises(ValueError, match="unknown noise kind 'uniform'"):
        nk.kernel_jobs(torch.zeros(4), "w", [(1, 1.0)], kind="uniform")
    with pytest.raises(ValueError, match="'w' has dtype torch.float64"):
        nk.kernel_jobs(torch.zeros(4, dtype=torch.float64), "w", [(1, 1.0)])
    with pytest.raises(ValueError, match="exceeds tensor 'w'"):
        nk.kernel_jobs(torch.zeros(10), "w", [(1, 1.0)], numel=12, start=5)
