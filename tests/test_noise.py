"""Seeded directions: reproducible across processes, independent of layout, order and global RNG."""

import subprocess
import sys

import pytest
import torch

from blackbox_zo.weights.noise import CHUNK, add_noise_, derive_seed, noise_slice


def digest(seed: int, name: str, n: int) -> str:
    z = noise_slice(seed, name, n, 0, n)
    return f"{float(z.double().sum()):.12e} {float(z[:7].double().sum()):.12e}"


def test_same_seed_same_direction_in_another_process():
    n = CHUNK + 4321
    code = (
        "import torch; torch.manual_seed(123); torch.randn(99);"  # disturb the global RNG on purpose
        "from tests.test_noise import digest;"
        f"print(digest(7, 'model.layers.0.mlp.up_proj.weight', {n}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == digest(7, "model.layers.0.mlp.up_proj.weight", n)


def test_direction_depends_on_seed_and_name_not_on_global_rng():
    a = noise_slice(1, "w", 1000, 0, 1000)
    torch.manual_seed(0)
    assert torch.equal(a, noise_slice(1, "w", 1000, 0, 1000))
    assert not torch.equal(a, noise_slice(2, "w", 1000, 0, 1000))
    assert not torch.equal(a, noise_slice(1, "v", 1000, 0, 1000))  # same shape, other tensor: other noise


def test_split_tensor_gets_the_elementwise_noise_of_the_original():
    rows, cols = 700, 3000  # 2.1 M elements: spans three chunks
    full = torch.zeros(rows, cols)
    add_noise_(full.view(-1), 5, "qkv", 0.5)
    top, bottom = torch.zeros(300, cols), torch.zeros(400, cols)
    add_noise_(top.view(-1), 5, "qkv", 0.5, numel=rows * cols, start=0)
    add_noise_(bottom.view(-1), 5, "qkv", 0.5, numel=rows * cols, start=300 * cols)
    assert torch.equal(torch.cat([top, bottom]), full)


def test_fused_tensor_gets_each_original_tensors_noise():
    q, k = torch.zeros(64, 32), torch.zeros(16, 32)
    add_noise_(q.view(-1), 9, "q", 1.0)
    add_noise_(k.view(-1), 9, "k", 1.0)
    fused = torch.zeros(80, 32)  # a backend storing q and k stacked, as vLLM's qkv_proj does
    add_noise_(fused[:64].reshape(-1), 9, "q", 1.0)
    add_noise_(fused[64:].reshape(-1), 9, "k", 1.0)
    assert torch.equal(fused, torch.cat([q, k]))


def test_column_shard_gets_the_columns_of_the_full_noise():
    """A row-parallel shard (columns c0: of every row) built row by row from canonical flat offsets."""
    rows, cols, c0 = 3, CHUNK // 2 + 7, 5  # rows straddle chunk boundaries
    n = rows * cols
    full = noise_slice(3, "w", n, 0, n).view(rows, cols)
    shard = torch.zeros(rows, cols - c0)
    for r in range(rows):
        add_noise_(shard[r], 3, "w", 1.0, numel=n, start=r * cols + c0)
    assert torch.equal(shard, full[:, c0:])


def test_gaussian_and_rademacher_statistics():
    g = noise_slice(11, "w", 200_000, 0, 200_000, "gaussian")
    r = noise_slice(11, "w", 200_000, 0, 200_000, "rademacher")
    assert abs(g.mean()) < 0.01 and abs(g.std() - 1) < 0.01
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(r.mean()) < 0.01
    with pytest.raises(ValueError, match="unknown noise kind"):
        noise_slice(1, "w", 10, 0, 10, "uniform")


def test_slice_past_the_end_is_refused():
    with pytest.raises(ValueError, match="exceeds tensor"):
        add_noise_(torch.zeros(10), 1, "w", 1.0, numel=12, start=5)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert len({derive_seed(1, "step", i) for i in range(1000)}) == 1000
    assert 0 <= derive_seed("x", 2**70) < 2**63


def test_multi_chunk_add_on_a_parameter_that_requires_grad():
    # trap: torch's grad mode is thread-local, so the chunk threads must set no_grad themselves
    p = torch.nn.Parameter(torch.zeros(2 * CHUNK + 5))
    with torch.no_grad():
        add_noise_(p.view(-1), 1, "w", 1.0)
    assert torch.equal(p.detach(), noise_slice(1, "w", p.numel(), 0, p.numel()))
