"""Low-rank directions: unit-variance entries of rank r per matrix, exact round trips, thread-independent bits."""

import subprocess
import sys

import pytest
import torch

import blackbox_zo as bz
from tests.zo_toy import make_problem, zero_one_error


def direction(kind, seed=7):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.LayerNorm(200))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bz.ParamSpace(model, noise=kind).apply([(seed, 1.0)])
    return {k: v.detach() - before[k] for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind, rank", [("lowrank", 1), ("lowrank3", 3)])
def test_matrices_get_rank_r_unit_variance_directions_and_vectors_stay_dense(kind, rank):
    z = direction(kind)
    w = z["0.weight"]
    assert torch.linalg.matrix_rank(w).item() == rank
    assert 0.9 < float(w.std()) < 1.1 and abs(float(w.mean())) < 0.05
    assert torch.equal(z["0.bias"], direction("gaussian")["0.bias"])  # vectors: the dense Gaussian direction
    assert not torch.equal(w, direction(kind, seed=8)["0.weight"])


def test_lowrank_bits_do_not_depend_on_the_thread_count():
    code = ("import torch, blackbox_zo as bz; torch.manual_seed(0); torch.set_num_threads(1); "
            "m = torch.nn.Linear(300, 200); bz.ParamSpace(m, noise='lowrank').apply([(7, 0.37), (9, -1.1)]); "
            "print(bz.fingerprint_tensors(dict(m.named_parameters())))")
    one_thread = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    m = torch.nn.Linear(300, 200)
    bz.ParamSpace(m, noise="lowrank").apply([(7, 0.37), (9, -1.1)])
    assert bz.fingerprint_tensors(dict(m.named_parameters())) == one_thread


def test_lowrank_runs_learn_and_replay_bitwise(tmp_path):
    log = tmp_path / "run.jsonl"
    model, X, y = make_problem()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    opt = bz.MeZO(model, eps=0.02, lr=0.01, seed=1, noise="lowrank", trajectory=log)
    for _ in range(150):
        opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    assert zero_one_error(model, X, y) < 0.3
    fresh, _, _ = make_problem()
    fresh.load_state_dict(base)
    bz.MeZO.replay(fresh, log)  # the noise kind comes from the log
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_lowrank_with_a_mask_or_a_bad_rank_is_refused():
    with pytest.raises(ValueError, match="mask_density"):
        bz.ParamSpace(torch.nn.Linear(3, 2), noise="lowrank", mask_density=0.5)
    with pytest.raises(ValueError, match="rank must be"):
        bz.ParamSpace(torch.nn.Linear(3, 2), noise="lowrank0")
    with pytest.raises(ValueError, match="lowrank"):
        bz.ParamSpace(torch.nn.Linear(3, 2), noise="lowrnk")


def test_grouped_draws_equal_one_generator_per_key_on_cpu():
    """draw_factors (every matrix and seed at once) gives the bits of a fresh generator per (seed, name, side)."""
    from blackbox_zo.weights.lowrank import draw_factors
    from blackbox_zo.weights.seeds import derive_seed

    got = draw_factors([("a", 5, 3, [7, 8]), ("b", 4, 6, [8])], 2, torch.device("cpu"))
    for name, rows, cols, seeds in (("a", 5, 3, [7, 8]), ("b", 4, 6, [8])):
        drawn_seeds, u, v = got[name]
        assert drawn_seeds == seeds and u.shape == (len(seeds), rows, 2) and v.shape == (len(seeds), cols, 2)
        for i, seed in enumerate(seeds):
            for side, n, mat in (("U", rows, u[i]), ("V", cols, v[i])):
                gen = torch.Generator().manual_seed(derive_seed(seed, name, "lowrank", side))
                assert torch.equal(mat, torch.randn(n, 2, generator=gen))


def test_the_update_built_for_all_matrices_at_once_has_the_bits_of_one_matrix_at_a_time():
    """update_tables (one gather per side over a population's matrices) writes what lowrank_update_ builds alone."""
    from blackbox_zo.weights.lowrank import draw_factors, lowrank_update_, update_tables

    torch.manual_seed(0)
    shapes = {"a": (7, 5), "b": (13, 3), "c": (4, 11)}
    pairs = [(9, 0.3), (7, -1.25), (8, 0.0)]
    drawn = draw_factors([(n, r, c, [7, 8, 9]) for n, (r, c) in shapes.items()], 2, torch.device("cpu"))
    tables = update_tables(drawn, pairs, 2)
    for name, shape in shapes.items():
        w = torch.randn(shape)
        alone, joined = w.clone(), w.clone()
        lowrank_update_(alone, name, pairs, 2, round_seed=1)
        lowrank_update_(joined, name, pairs, 2, round_seed=1, drawn=drawn, tables=tables[name])
        assert torch.equal(alone, joined) and not torch.equal(alone, w)
