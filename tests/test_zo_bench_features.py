"""The ZO-Bench features do what their names say, checked through full MeZO steps, not only the backend.

mask_density moves only its share of entries, blockwise one block per direction, one_sided evaluates theta
itself, conservative keeps no point worse than its estimate of f(theta); dense momentum/Adam are in test_transforms.
"""

import torch

import blackbox_zo as bz


def layered(n_layers=3, width=6, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Module()
    model.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(n_layers)])
    return model


def flat(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def quadratic(model):
    return sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())


def test_mask_density_moves_only_the_chosen_share_through_whole_steps():
    lin = torch.nn.Linear(40, 50)
    w0 = lin.weight.detach().clone()
    opt = bz.MeZO(lin, mask_density=0.1, lr=0.01, eps=0.01)
    for _ in range(3):
        opt.step(lambda: quadratic(lin))
    moved = lin.weight.detach() != w0
    chosen = opt.backend.masks["weight"].view_as(w0)
    assert not moved[~chosen].any()  # bitwise unchanged outside the mask
    assert moved[chosen].float().mean() > 0.99
    assert abs(chosen.float().mean().item() - 0.1) < 0.005


def test_blockwise_step_perturbs_and_updates_one_block_per_direction():
    model = layered()
    before = flat(model)
    seen = []

    def closure():
        seen.append({k.split(".")[1] for k, v in flat(model).items() if not torch.equal(v, before[k])})
        return quadratic(model)

    opt = bz.MeZO(model, blockwise=True, lr=0.01, eps=0.01)
    opt.step(closure)
    chosen = opt.backend.block_for_seed(opt.last.grad[0][0]).split(".")[1]
    assert seen == [{chosen}, {chosen}]  # both sides perturb only the chosen layer
    assert {k.split(".")[1] for k, v in flat(model).items() if not torch.equal(v, before[k])} == {chosen}


def test_one_sided_evaluates_theta_itself_first_then_n_points():
    lin = torch.nn.Linear(4, 3)
    before = flat(lin)
    seen = []

    def closure():
        seen.append(all(torch.equal(v, before[k]) for k, v in flat(lin).items()))
        return quadratic(lin)

    bz.MeZO(lin, estimator="one_sided", n=3).step(closure)
    assert seen == [True, False, False, False]


def test_conservative_never_keeps_a_point_worse_than_theta_with_one_sided():
    # a large step on a quadratic: plain sgd overshoots on many steps, conservative must never get worse.
    # A rejected step returns to theta by +u, -2u, +u in float32, so theta drifts by rounding (~1e-7 relative).
    def worse_and_kept(optimizer):
        model = layered(seed=1)
        opt = bz.MeZO(model, estimator="one_sided", optimizer=optimizer, lr=0.05, eps=1e-3, seed=4)
        worse = kept = 0
        for _ in range(30):
            f_before = quadratic(model)
            opt.step(lambda: quadratic(model))
            worse += quadratic(model) > f_before * (1 + 1e-6)
            kept += quadratic(model) < f_before * (1 - 1e-6)
        return worse, kept

    assert worse_and_kept("sgd")[0] > 10
    worse, kept = worse_and_kept("conservative")
    assert worse == 0 and kept > 5  # it does take the steps that help


def test_conservative_with_spsa_keeps_no_point_worse_than_the_mean_of_its_two_sides():
    model = layered(seed=2)
    opt = bz.MeZO(model, optimizer="conservative", lr=0.3, eps=1e-3, seed=5)
    for _ in range(20):
        opt.step(lambda: quadratic(model))
        f_kept = quadratic(model)
        assert f_kept <= opt.last.value + 1e-9  # on a convex f, f(theta) <= the mean of f(theta +- eps z)
        assert 1 <= len(opt.last.checks) <= 2


def test_the_feature_benchmark_spends_the_same_evaluations_on_every_row(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "zo_bench_features.py"
    spec = importlib.util.spec_from_file_location("zo_bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--seeds", "2", "--budget", "24", "--lrs", "0.01", "--rows", "default,conservative,one_sided",
                          "--out", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)  # the benchmark pins one thread
    rows = out["rows"]
    assert all(24 <= r["evals"]["mean"] <= 26 for r in rows.values())  # a step may finish past the budget
    assert rows["default"]["steps"]["mean"] == 12 and rows["conservative"]["steps"]["mean"] < 12
