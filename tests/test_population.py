"""A population evaluated at use time (hooks, one batched forward) equals the same points visited in place.

Also: the weights are bitwise untouched by a batched evaluation, even one that raises; a batched run replays
bitwise from base + trajectory; a bfloat16 batched space keeps no float32 copy and rounds updates stochastically.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.lm import TransformersLM
from blackbox_zo.step.engine import Walker
from blackbox_zo.weights import lowrank, population

PROMPTS = ["the movie was", "a long and dull film about", "I loved it", "terrible"]
TARGETS = [" great", " boring indeed", " so much", " acting"]
POINTS = [[(11, 0.05)], [(11, -0.05)], [(12, 0.05)], [(12, -0.05)], [], [(13, 0.05), (14, -0.03)]]


def snapshot(space):
    return {n: t.detach().clone() for n, t in space.tensors.items()}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def in_place(space, lm_call, points):
    """Each point visited by moving the weights (the reference), then theta restored."""
    walker, out = Walker(space, points), []
    with torch.no_grad():
        for i in range(len(points)):
            walker.move_to(i)
            out.append(lm_call())
        space.apply(walker.finish())
    return out


def batched(space, lm_call, points):
    out = []
    with torch.no_grad(), space.population(points) as members:
        for i in range(len(points)):
            members.select(i)
            out.append(lm_call())
    return out


def spaces_for(model):
    """The same tensors twice: once walked in place, once evaluated at use time."""
    return (bz.ParamSpace(model, noise="lowrank", evaluate="inplace"),
            bz.ParamSpace(model, noise="lowrank", evaluate="batched"))


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_batched_scores_equal_in_place(arch, request):
    model, tok = request.getfixturevalue(arch)
    walked, hooked = spaces_for(model)
    assert hooked.evaluate_mode == "batched" and walked.evaluate_mode == "inplace"
    lm = TransformersLM(model, tok, batch_size=3, population_rows=7)  # several forwards per population
    for call in (lambda: lm.loglik(PROMPTS, TARGETS), lambda: lm.label_word_logits(PROMPTS, ["great", "terrible"])):
        ref = in_place(walked, call, POINTS)  # (restoring theta in place drifts by rounding: compare after it)
        base = snapshot(hooked)
        got = batched(hooked, call, POINTS)
        assert same(base, snapshot(hooked))  # the weights were never written
        for r, g in zip(ref, got):
            torch.testing.assert_close(torch.as_tensor(g), torch.as_tensor(r), atol=2e-4, rtol=1e-4)
        assert not torch.allclose(torch.as_tensor(ref[0]), torch.as_tensor(ref[1]))  # the points do differ


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])  # GPT-2: Conv1D layers, LayerNorm biases, tied wte
def test_batched_generation_equals_in_place(arch, request):
    model, tok = request.getfixturevalue(arch)
    walked, hooked = spaces_for(model)
    lm = TransformersLM(model, tok, batch_size=4)
    call = lambda: lm.generate(PROMPTS, max_new_tokens=6)  # noqa: E731 greedy
    assert batched(hooked, call, POINTS) == in_place(walked, call, POINTS)


def test_one_forward_serves_every_member(tiny_llama):
    model, tok = tiny_llama
    _, hooked = spaces_for(model)
    lm = TransformersLM(model, tok, batch_size=16, population_rows=1024)
    calls = []
    handle = model.register_forward_hook(lambda m, a, k, out: calls.append(k["input_ids"].shape[0]), with_kwargs=True)
    try:
        batched(hooked, lambda: lm.loglik(PROMPTS, TARGETS), POINTS)
    finally:
        handle.remove()
    assert calls == [len(PROMPTS) * len(POINTS)]  # all members' rows in one forward


def test_plain_closure_sees_the_selected_member(tiny_llama):
    """A closure that calls the model itself (no LM) gets each member on every row, one member at a time."""
    model, tok = tiny_llama
    walked, hooked = spaces_for(model)
    ids = tok([PROMPTS[1]] * 2, return_tensors="pt")["input_ids"]  # no padding: pad positions' logits are noise
    call = lambda: model(input_ids=ids).logits  # noqa: E731
    for r, g in zip(in_place(walked, call, POINTS), batched(hooked, call, POINTS)):
        torch.testing.assert_close(g, r, atol=2e-4, rtol=1e-4)


def test_weights_untouched_after_an_exception(tiny_llama):
    model, tok = tiny_llama
    opt = bz.MeZO(model, noise="lowrank", estimator="population", n=3)
    assert opt.engine.batched
    base = snapshot(opt.backend)
    lm = TransformersLM(model, tok)
    seen = []

    def closure():
        seen.append(lm.loglik(PROMPTS, TARGETS)[0])
        if len(seen) == 4:
            raise RuntimeError("judge went away")
        return seen[-1]

    with pytest.raises(bz.ObjectiveError, match="judge went away.*never moved"):
        opt.step(closure)
    assert same(base, snapshot(opt.backend))
    assert population.active() is None and not any(m._forward_hooks for m in model.modules())


def test_batched_run_replays_bitwise(tiny_llama, tmp_path):
    model, tok = tiny_llama
    base = copy.deepcopy(model)
    lm = TransformersLM(model, tok)
    log = tmp_path / "run.jsonl"
    opt = bz.MeZO(model, noise="lowrank", estimator="population", n=4, maximize=True, trajectory=log)
    for _ in range(3):
        opt.step(lambda: sum(lm.loglik(PROMPTS, TARGETS)))
    opt.close()
    assert json.loads(log.read_text().splitlines()[0])["config"]["evaluate"] == "batched"
    replayed = bz.MeZO.replay(base, log)
    assert replayed.engine.batched
    tuned, rebuilt = dict(model.named_parameters()), dict(base.named_parameters())
    assert all(torch.equal(tuned[n], rebuilt[n]) for n in tuned)
    assert not torch.equal(tuned["model.embed_tokens.weight"], make_base(tok)["model.embed_tokens.weight"])


def make_base(tok):
    from tests.conftest import make_tiny_llama

    return dict(make_tiny_llama(tok)[0].named_parameters())


def test_replay_refuses_another_evaluation(tiny_llama, tmp_path):
    model, tok = tiny_llama
    base = copy.deepcopy(model)
    log = tmp_path / "run.jsonl"
    opt = bz.MeZO(model, noise="lowrank", trajectory=log)
    opt.step(lambda: float(model.lm_head.weight.sum()))
    opt.close()
    with pytest.raises(bz.TrajectoryError, match="evaluate='batched'"):
        bz.MeZO.replay(bz.ParamSpace(base, noise="lowrank", evaluate="inplace"), log)


def test_bfloat16_batched_keeps_no_float32_copy_and_rounds_stochastically(tiny_llama):
    model, tok = tiny_llama
    model = model.to(torch.bfloat16)
    space = bz.ParamSpace(model, noise="lowrank")
    assert space.evaluate_mode == "batched" and not space.masters
    weight = space.tensors["model.layers.0.mlp.up_proj.weight"]
    before = weight.detach().clone()
    pairs = [(21, 1e-5)]  # far below bf16's half-ulp for most entries: round-to-nearest would lose nearly all
    space.apply(pairs)
    moved = (weight.float() - before.float())
    u, v = lowrank.factors(21, "model.layers.0.mlp.up_proj.weight", *weight.shape, 1, weight.device)
    intended = 1e-5 * (u @ v.T)
    lost_nearest = ((before.float() + intended).to(torch.bfloat16) == before).float().mean()
    assert lost_nearest > 0.8
    assert moved.ne(0).float().mean() > 0.01  # some entries moved by a whole ulp ...
    # ... and on average the update survives: E[round(x)] = x
    corr = torch.corrcoef(torch.stack([moved.flatten(), intended.flatten()]))[0, 1]
    assert corr > 0.3
    again = before.clone()
    space_again = bz.ParamSpace({"model.layers.0.mlp.up_proj.weight": again}, noise="lowrank", evaluate="inplace")
    assert space_again.masters  # an in-place bf16 space still keeps masters by default


def test_bad_evaluate_is_named(tiny_llama):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match="evaluate must be one of"):
        bz.ParamSpace(model, evaluate="fast")
    with pytest.raises(ValueError, match="no module was given"):
        bz.ParamSpace(dict(model.named_parameters()), noise="lowrank", evaluate="batched")
    with pytest.raises(ValueError, match="cannot be hooked"):
        bz.ParamSpace(model, noise="gaussian", evaluate="batched")  # dense gaussian over big-enough matrices? see below


def test_ask_tell_batched_equals_mezo_step_bitwise(tiny_llama):
    model, tok = tiny_llama
    twin = copy.deepcopy(model)
    settings = dict(noise="lowrank", estimator="population", n=3, maximize=True, seed=5)
    score = lambda lm: sum(lm.loglik(PROMPTS, TARGETS))  # noqa: E731
    opt, lm = bz.MeZO(model, **settings), TransformersLM(model, tok)
    at, twin_lm = bz.AskTell(twin, **settings), TransformersLM(twin, tok)
    for _ in range(2):
        opt.step(lambda: score(lm))
        results = []
        for c in at.ask():
            with at.visit(c):
                results.append(score(twin_lm))
        at.tell(results)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_a_share_scores_only_its_members(tiny_llama):
    """A Ray worker declares its share: one forward holds exactly those members' rows."""
    model, tok = tiny_llama
    at, lm = bz.AskTell(model, noise="lowrank", estimator="population", n=4), TransformersLM(model, tok, batch_size=16)
    mine = at.ask()[2:5]
    at.share(mine)
    rows = []
    handle = model.register_forward_hook(lambda m, a, k, out: rows.append(k["input_ids"].shape[0]), with_kwargs=True)
    try:
        for c in mine:
            with at.visit(c):
                lm.loglik(PROMPTS, TARGETS)
    finally:
        handle.remove()
    assert rows == [3 * len(PROMPTS)]
    with pytest.raises(ValueError, match="not in this copy's share"):
        with at.visit(at.ask()[0]):
            pass


def test_rows_tagged_in_any_order_get_their_members_product(tiny_llama):
    """The general path (rows of any members in any order) agrees with the member-major block path."""
    model, _ = tiny_llama
    space = bz.ParamSpace(model, noise="lowrank")
    members = space.population(POINTS)
    u, v = members.lowrank_factors("model.layers.0.mlp.up_proj.weight")
    x = torch.randn(12, 3, v.shape[1])
    tags = torch.tensor([5, 0, 3, 3, 1, 4, 2, 0, 5, 1, 2, 4])
    with members.tagged(tags):
        got = members.times(x, v)
    expected = torch.stack([x[i] @ v[tags[i]] for i in range(12)])
    torch.testing.assert_close(got, expected)
    order = tags.argsort(stable=True)  # member-major: 2 rows of each member in turn
    with members.tagged(tags[order], block=(0, len(POINTS))):
        torch.testing.assert_close(members.times(x[order], v), expected[order])


def test_a_second_population_gets_its_own_members_factors(tiny_llama):
    """Every matrix's factors are drawn at a population's first use; a new population draws its own seeds."""
    model, _ = tiny_llama
    name = "model.layers.0.mlp.up_proj.weight"
    space = bz.ParamSpace(model, noise="lowrank")
    first = space.population([[(1, 0.5)], [(2, -0.5)]])
    first.lowrank_factors(name)
    second_points = [[(3, 0.25)], [(1, -1.0)], [(2, 2.0)]]
    u, v = space.population(second_points).lowrank_factors(name)
    space.drawn.clear()
    fresh_u, fresh_v = space.population(second_points).lowrank_factors(name)
    assert torch.equal(u, fresh_u) and torch.equal(v, fresh_v)
    a, b = lowrank.factors(1, name, *space.tensors[name].shape, 1, u.device)
    assert torch.equal(u[1], -1.0 * a) and torch.equal(v[1], b)  # member 1 is -1 x seed 1's U V^T


@pytest.mark.parametrize("kind", ["steer", "prefix", "lora"])
def test_small_spaces_batch_by_default_and_equal_in_place(kind, tiny_llama):
    """Steering vectors and prefixes add their own per-row offsets; LoRA factors are hooked linear layers."""
    model, tok = tiny_llama
    build = {"steer": lambda m, **kw: bz.steering_space(m, tok, **kw),
             "prefix": lambda m, **kw: bz.prefix_space(m, tok, num_tokens=3, **kw),
             "lora": lambda m, **kw: bz.lora_space(m, r=2, **kw)}[kind]
    torch.manual_seed(0)  # LoRA A starts random: both copies from the same draw
    hooked_model, hooked = build(copy.deepcopy(model))
    torch.manual_seed(0)
    walked_model, walked = build(copy.deepcopy(model), evaluate="inplace")
    assert hooked.evaluate_mode == "batched" and walked.evaluate_mode == "inplace"
    points = [[(31, 0.5)], [(31, -0.5)], [(32, 0.5)], []]  # large enough to move a zero-initialised space
    hooked_lm, walked_lm = TransformersLM(hooked_model, tok), TransformersLM(walked_model, tok)
    got = batched(hooked, lambda: torch.tensor(hooked_lm.loglik(PROMPTS, TARGETS)), points)
    ref = in_place(walked, lambda: torch.tensor(walked_lm.loglik(PROMPTS, TARGETS)), points)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=2e-4, rtol=1e-4)
    assert not torch.allclose(got[0], got[1])


def test_a_bfloat16_batched_step_allocates_no_float32_copy_of_a_weight(tiny_llama):
    """Bytes allocated during a whole step: no float32 tensor larger than one noise chunk of scratch, where a
    float32 master of the tied embedding alone would hold vocab x hidden elements."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from blackbox_zo.weights.noise import CHUNK

    class LargestFloat32(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                    LargestFloat32.largest = max(LargestFloat32.largest, t.numel())
            return out

    model, tok = tiny_llama
    model = model.to(torch.bfloat16)
    embedding = model.get_input_embeddings().weight
    assert embedding.numel() > CHUNK
    opt = bz.MeZO(model, noise="lowrank", estimator="population", n=2, maximize=True)
    ids = tok(PROMPTS[:1], return_tensors="pt")["input_ids"]
    before = embedding.detach().clone()
    with LargestFloat32():
        opt.step(lambda: float(model(input_ids=ids).logits[0, -1, :100].float().sum()))
    assert not opt.backend.masters
    assert LargestFloat32.largest <= CHUNK
    assert not torch.equal(before, embedding)  # the step did write the weights


def test_the_lm_population_contract(tiny_llama):
    """The contract the LM protocol documents: the population is active() inside its block only (and not inside
    suspended()); the first call scores every member and caches the others, later members are served from the
    cache with no forward, and each call returns the selected member's in-place result."""
    model, tok = tiny_llama
    walked, hooked = spaces_for(model)
    lm = TransformersLM(model, tok, batch_size=16, population_rows=1024)
    call = lambda: lm.loglik(PROMPTS, TARGETS)  # noqa: E731
    reference = in_place(walked, call, POINTS)
    base = call()
    forwards = []
    handle = model.register_forward_hook(lambda m, a, out: forwards.append(1))
    try:
        assert population.active() is None
        with torch.no_grad(), hooked.population(POINTS) as members:
            assert population.active() is members
            members.select(0)
            first = call()
            assert len(forwards) == 1 and len(members.cache) == 1  # every member's rows, one forward, one entry
            assert len(next(iter(members.cache.values()))) == len(POINTS)
            for i in range(1, len(POINTS)):
                members.select(i)
                torch.testing.assert_close(torch.tensor(call()), torch.tensor(reference[i]), atol=2e-4, rtol=1e-4)
            assert len(forwards) == 1  # later members answered from the cache
            with population.suspended():
                assert population.active() is None
                assert call() == pytest.approx(base, abs=1e-5)  # the weights as they are: theta
        assert population.active() is None
    finally:
        handle.remove()
    torch.testing.assert_close(torch.tensor(first), torch.tensor(reference[0]), atol=2e-4, rtol=1e-4)
