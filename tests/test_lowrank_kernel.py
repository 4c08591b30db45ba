"""The CUDA kernels of a low-rank step, on CPU under triton's interpreter: factors of many seeds, the rounded update."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton builds the kernels: CPU tensors, numpy semantics

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from blackbox_zo.weights import noise_kernel as nk  # noqa: E402
from blackbox_zo.weights.lowrank_kernel import lowrank_rounded_kernel_  # noqa: E402


def test_draw_rows_gives_each_key_its_own_stream_in_one_launch():
    keys = [nk.kernel_key(5, "w"), nk.kernel_key(6, "w"), nk.kernel_key(5, "v")]
    rows = nk.draw_rows(keys, 1001, "cpu")
    for row, (seed, name) in zip(rows, [(5, "w"), (6, "w"), (5, "v")]):
        assert torch.equal(row, nk.kernel_slice(seed, name, 1001, 0, 1001, device="cpu"))
    assert nk.draw_rows([], 10, "cpu").shape == (0, 10)


def neighbours(exact: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The representable values just below and just above each exact (float64) value."""
    near = exact.to(dtype)
    up = near.double() > exact
    lo = torch.where(up, torch.nextafter(near, torch.tensor(-float("inf"), dtype=dtype)), near)
    hi = torch.where(up, near, torch.nextafter(near, torch.tensor(float("inf"), dtype=dtype)))
    return lo, hi


@pytest.mark.parametrize("dtype, size", [(torch.bfloat16, 1e-5), (torch.float16, 1e-6)])  # fp16's ulp is 8x finer
def test_rounded_update_lands_on_a_neighbour_is_seeded_and_unbiased(dtype, size):
    torch.manual_seed(0)
    w = (torch.randn(130, 250) * 0.02).to(dtype)
    u, v = torch.randn(130, 6) * size, torch.randn(250, 6)  # below half an ulp: nearest keeps most of w
    exact = w.double() + u.double() @ v.double().T
    assert exact.to(dtype).eq(w).double().mean() > 0.5  # round-to-nearest would lose the update on most entries
    a, b, c = w.clone(), w.clone(), w.clone()
    for out, key in ((a, 11), (b, 11), (c, 12)):
        lowrank_rounded_kernel_(out, u, v, key)
    lo, hi = neighbours(exact, dtype)
    assert bool(((a == lo) | (a == hi)).all())  # every element is one of the two neighbours of the exact value
    assert torch.equal(a, b) and not torch.equal(a, c)  # same key, same bits; another key, other bits
    moved, intended = (a.double() - w.double()).flatten(), (exact - w.double()).flatten()
    assert moved.ne(0).double().mean() > 0.01
    slope = float((moved * intended).sum() / (intended * intended).sum())  # E[round(x)] = x: slope 1 in expectation
    assert 0.85 < slope < 1.15, slope


def test_rounded_update_of_a_strided_block_and_wide_factors():
    """A row block of a larger matrix (leading dimension > columns) and K = 40 > one k-slice of the tile product."""
    torch.manual_seed(1)
    big = (torch.randn(64, 96) * 0.5).to(torch.bfloat16)
    block = big[:, 8:72]
    u, v = torch.randn(64, 40), torch.randn(64, 40)
    exact = block.double() + u.double() @ v.double().T
    before = big.clone()
    lowrank_rounded_kernel_(block, u, v, 3)
    lo, hi = neighbours(exact, torch.bfloat16)
    assert bool(((block == lo) | (block == hi)).all())
    assert torch.equal(big[:, :8], before[:, :8]) and torch.equal(big[:, 72:], before[:, 72:])


def test_rounded_update_names_bad_input():
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        lowrank_rounded_kernel_(torch.zeros(4, 4), torch.zeros(4, 1), torch.zeros(4, 1), 0)
    with pytest.raises(ValueError, match="do not fit"):
        lowrank_rounded_kernel_(torch.zeros(4, 4, dtype=torch.bfloat16), torch.zeros(3, 1), torch.zeros(4, 1), 0)


def test_the_device_check_script_passes_under_the_interpreter():
    """benchmarks/gpu_kernel_check.py is what a GPU session runs first: keep it runnable (here on CPU tensors)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import gpu_kernel_check

    results = gpu_kernel_check.checks("cpu")
    assert len(results) == 6 and all(results.values()), results
