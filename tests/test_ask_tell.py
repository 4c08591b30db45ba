"""Ask/tell is the engine without the walk: driven by hand it equals MeZO.step bitwise, and replays the same."""

import json

import pytest
import torch

import blackbox_zo as bz
from tests.zo_toy import make_problem, zero_one_error


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def prefer_lower(a, b):
    return float((a < b) - (a > b))


CASES = [
    dict(),  # the defaults: spsa, normalized rule, adaptive radius
    dict(rule="raw", lr=0.05),
    dict(optimizer="sign", lr=0.02),
    dict(optimizer="momentum", lr=0.01),
    dict(optimizer="momentum", lr=0.01, window=4),
    dict(optimizer="adam", lr=0.02),
    dict(estimator="one_sided", n=2),
    dict(estimator="spsa", n=3, rule="raw", lr=0.05),
    dict(estimator="population", n=4, shaping="rank"),
    dict(estimator="pairwise", n=2),
    dict(weight_decay=0.05, clip_value=0.5, schedule={"name": "cosine", "total_steps": 20, "warmup_steps": 2}),
]


def drive(at, model, X, y, until):
    """Ask/tell by hand until step `until`: visit every candidate in order, tell what it scored."""
    while at.step_count < until:
        results = []
        for cand in at.ask():
            with at.visit(cand):
                results.append(zero_one_error(model, X, y))
        at.tell(results)


def run_mezo(kw, steps, trajectory=None):
    model, X, y = make_problem()
    compare = prefer_lower if kw.get("estimator") == "pairwise" else None
    opt = bz.MeZO(model, eps=0.05, seed=5, compare=compare, trajectory=trajectory, **kw)
    for _ in range(steps):
        opt.step(lambda: zero_one_error(model, X, y))
    opt.close()
    return model, opt


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_ask_tell_by_hand_equals_mezo_step_bitwise(tmp_path, kw):
    model_a, opt = run_mezo(kw, 12, tmp_path / "a.jsonl")
    model_b, X, y = make_problem()
    compare = prefer_lower if kw.get("estimator") == "pairwise" else None
    at = bz.AskTell(model_b, eps=0.05, seed=5, compare=compare, trajectory=tmp_path / "b.jsonl", **kw)
    drive(at, model_b, X, y, until=12)
    at.close()
    a, b = snapshot(model_a), snapshot(model_b)
    assert any(not torch.equal(a[k], make_problem()[0].state_dict()[k]) for k in a), "the run did not move"
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_replicas_told_the_same_values_stay_bitwise_equal():
    """A log-only driver and two replicas that each evaluate only some candidates end equal."""
    driver = bz.AskTell(None, eps=0.05, seed=1, n=2, estimator="population")
    replicas = [make_problem() for _ in range(2)]
    tellers = [bz.AskTell(m, eps=0.05, seed=1, n=2, estimator="population") for m, _, _ in replicas]
    for _ in range(6):
        cands = driver.ask()
        values = [None] * len(cands)
        for w, (at, (m, X, y)) in enumerate(zip(tellers, replicas)):
            for i, cand in enumerate(at.ask()):
                if i % 2 == w:  # each replica evaluates its share; the others are passed through
                    with at.visit(cand):
                        values[i] = zero_one_error(m, X, y)
        driver.tell_values(values)
        for at in tellers:
            at.tell_values(values)
    a, b = snapshot(replicas[0][0]), snapshot(replicas[1][0])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ask_tell_resumes_from_its_trajectory(tmp_path):
    log = tmp_path / "run.jsonl"
    model_a, _ = run_mezo({}, 10)
    model_b, X, y = make_problem()
    at = bz.AskTell(model_b, eps=0.05, seed=5, trajectory=log)
    drive(at, model_b, X, y, until=4)
    at.close()
    model_c, X, y = make_problem()
    at = bz.AskTell(model_c, eps=0.05, seed=5, trajectory=log, resume=True)
    assert at.step_count == 4
    drive(at, model_c, X, y, until=10)
    a, c = snapshot(model_a), snapshot(model_c)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_visit_out_of_order_is_refused_and_errors_restore_theta():
    model, X, y = make_problem()
    before = snapshot(model)
    at = bz.AskTell(model, eps=0.05, seed=2)
    cands = at.ask()
    with at.visit(cands[1]):
        pass
    with pytest.raises(ValueError, match="ask\\(\\) order"):
        with at.visit(cands[0]):
            pass
    at.restore()
    assert all(torch.allclose(snapshot(model)[k], before[k], atol=1e-7) for k in before)
    with pytest.raises(RuntimeError, match="boom"):
        with at.visit(at.ask()[0]):
            raise RuntimeError("boom")
    assert all(torch.allclose(snapshot(model)[k], before[k], atol=1e-7) for k in before)


def test_tell_checks_counts_and_conservative_is_refused():
    at = bz.AskTell(torch.nn.Linear(3, 1), eps=0.01)
    with pytest.raises(bz.ObjectiveError, match="2 candidates"):
        at.tell([1.0])
    with pytest.raises(ValueError, match="conservative"):
        bz.AskTell(torch.nn.Linear(3, 1), optimizer="conservative")




class JudgeDownOnce:
    """A pairwise compare that raises on its first call (a judge service that was down), then prefers lower."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("judge down")
        return prefer_lower(a, b)


def visit_all(at, model, X, y):
    results = []
    for cand in at.ask():
        with at.visit(cand):
            results.append(zero_one_error(model, X, y))
    return results


def test_a_failing_tell_restores_theta_as_a_failing_mezo_step_does():
    """A compare that raises inside tell: the weights make the moves MeZO.step makes when its compare raises
    (bitwise), i.e. back to theta; the same step can then be visited and told again."""
    model_a, X, y = make_problem()
    base = snapshot(model_a)
    opt = bz.MeZO(model_a, eps=0.05, seed=2, estimator="pairwise", n=2, compare=JudgeDownOnce())
    with pytest.raises(bz.ObjectiveError, match="judge down"):
        opt.step(lambda: zero_one_error(model_a, X, y))
    model_b, X, y = make_problem()
    at = bz.AskTell(model_b, eps=0.05, seed=2, estimator="pairwise", n=2, compare=JudgeDownOnce())
    results = visit_all(at, model_b, X, y)
    with pytest.raises(bz.ObjectiveError, match=r"compare raised RuntimeError: judge down \(step 0, direction 0\)"):
        at.tell(results)
    a, b = snapshot(model_a), snapshot(model_b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(b[k], base[k], rtol=0, atol=1e-7) for k in base)  # theta, up to the walk's rounding
    assert at.tell(visit_all(at, model_b, X, y)).step == 0 and at.step_count == 1  # the judge is back
    opt.step(lambda: zero_one_error(model_a, X, y))
    a, b = snapshot(model_a), snapshot(model_b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fail", ["compare", "value count", "non-number"])
def test_every_failing_tell_leaves_the_weights_bitwise_the_base(fail):
    """On a base the walk moves exactly (zeros, eps a power of two: theta + eps z - eps z == theta in floats),
    a failing tell may leave nothing of the walk behind."""
    weights = {"w": torch.zeros(64), "b": torch.zeros(8)}
    pairwise = fail == "compare"
    at = bz.AskTell(weights, eps=0.0625, seed=4, n=1, estimator="pairwise" if pairwise else "spsa",
                    compare=JudgeDownOnce() if pairwise else None)
    for cand in at.ask():
        with at.visit(cand):
            assert weights["w"].abs().sum() > 0  # the visit moved the weights
    with pytest.raises(bz.ObjectiveError):
        if fail == "compare":
            at.tell(["a", "b"])
        elif fail == "value count":
            at.tell_values([1.0])
        else:
            at.tell_values([1.0, "x"])
    assert all(torch.equal(t, torch.zeros_like(t)) for t in weights.values())
    assert at.step_count == 0 and len(at.ask()) == 2  # the step is still open


def test_groups_prefer_and_record_are_what_a_driver_of_replicas_needs(tmp_path):
    """groups() says which candidates each told value comes from, prefer() judges one pair, record() is the log line."""
    model, X, y = make_problem()
    at = bz.AskTell(model, eps=0.05, seed=3, n=2, estimator="pairwise", compare=prefer_lower, trajectory=tmp_path / "t.jsonl")
    assert at.groups() == [(0, 1), (2, 3)]
    outs = visit_all(at, model, X, y)
    prefs = [at.prefer(k, *(outs[p] for p in pair)) for k, pair in enumerate(at.groups())]
    assert prefs == [prefer_lower(outs[0], outs[1]), prefer_lower(outs[2], outs[3])]
    result = at.tell_values(prefs)
    at.close()
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1]) == at.record(result)
    spsa = bz.AskTell(torch.nn.Linear(3, 1), n=2)
    assert spsa.groups() == [(0,), (1,), (2,), (3,)]
    with pytest.raises(ValueError, match="estimator 'pairwise', not 'spsa'"):
        spsa.prefer(0, 1.0, 2.0)
    with pytest.raises(ValueError, match="direction 2 is not one of this step's 0-1"):
        at.prefer(2, 1.0, 2.0)


def test_every_face_implements_the_face_protocol(tmp_path):
    """MeZO, AskTell and CMA answer what the Trainer and `run` call (DistributedMeZO: tests/test_distributed.py)."""
    from blackbox_zo.faces.protocol import AskTellFace, Face

    model = make_problem()[0]
    faces = [bz.MeZO(model), bz.AskTell(model), bz.CMA(bz.ParamSpace({"w": torch.zeros(3, requires_grad=True)}))]
    for face in faces:
        assert isinstance(face, Face) and isinstance(face, AskTellFace), type(face).__name__
        report = face.report()
        assert report["tuned_elements"] == face.backend.numel() and report["final_fingerprint"] == face.backend.fingerprint()
    assert [f.maximize for f in faces] == [False] * 3 and [f.pairwise for f in faces] == [False] * 3


def test_ask_tell_step_equals_mezo_step_bitwise(tmp_path):
    model_a, _ = run_mezo({}, 6, tmp_path / "a.jsonl")
    model_b, X, y = make_problem()
    at = bz.AskTell(model_b, eps=0.05, seed=5, trajectory=tmp_path / "b.jsonl")
    for _ in range(6):
        at.step(lambda: zero_one_error(model_b, X, y))
    at.close()
    assert all(torch.equal(a, b) for a, b in zip(snapshot(model_a).values(), snapshot(model_b).values()))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_replay_is_one_kind_of_method_and_the_old_call_form_still_works(tmp_path):
    """face.replay(records) catches a face up; Face.replay(params, path) on the class rebuilds (as before)."""
    model, opt = run_mezo({}, 5, tmp_path / "run.jsonl")
    records = bz.Trajectory(tmp_path / "run.jsonl").records
    tuned = snapshot(model)
    for cls in (bz.MeZO, bz.AskTell):
        fresh = make_problem()[0]
        face = cls(fresh, eps=0.05, seed=5)
        face.replay(records[:2])
        face.replay(records[2:])
        assert face.step_count == 5 and all(torch.equal(a, b) for a, b in zip(snapshot(fresh).values(), tuned.values()))
        rebuilt = make_problem()[0]
        assert cls.replay(rebuilt, tmp_path / "run.jsonl", steps=5).step_count == 5
        assert all(torch.equal(a, b) for a, b in zip(snapshot(rebuilt).values(), tuned.values()))
    with pytest.raises(bz.TrajectoryError, match="step 0 found where step 5"):
        face.replay(records[:1])


def test_mezo_asks_and_tells_as_ask_tell_does(tmp_path):
    """MeZO has AskTell's ask / visit / tell: a step told by hand equals step(); a pending ask blocks step()."""
    model_a, _ = run_mezo({}, 4, tmp_path / "a.jsonl")
    model_b, X, y = make_problem()
    opt = bz.MeZO(model_b, eps=0.05, seed=5, trajectory=tmp_path / "b.jsonl")
    opt.step(lambda: zero_one_error(model_b, X, y))
    drive(opt, model_b, X, y, until=3)
    opt.ask()
    with pytest.raises(ValueError, match="finish it with tell"):
        opt.step(lambda: zero_one_error(model_b, X, y))
    drive(opt, model_b, X, y, until=4)
    opt.close()
    assert all(torch.equal(a, b) for a, b in zip(snapshot(model_a).values(), snapshot(model_b).values()))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    conservative = bz.MeZO(make_problem()[0], optimizer="conservative")
    with pytest.raises(ValueError, match="use step"):
        conservative.ask()
