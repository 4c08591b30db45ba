"""The preference web app through Starlette's test client, on a tiny random Llama (seconds, no browser).

Covers the step logic (pairs at theta +- eps z with one sampling seed, votes -> tell_values), the
guards (CSRF, body size, unknown/duplicate/finished pairs, access token), leases, restart and export.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from blackbox_zo import MeZO, ParamSpace  # noqa: E402
from blackbox_zo.lm import TransformersLM  # noqa: E402
from blackbox_zo.prefer.app import create_app  # noqa: E402
from blackbox_zo.prefer.config import load_prefer_config  # noqa: E402
from blackbox_zo.prefer.export import export_votes  # noqa: E402
from blackbox_zo.prefer.security import check_bind  # noqa: E402
from blackbox_zo.prefer.session import TRAJECTORY, PreferSession  # noqa: E402
from blackbox_zo.prefer.store import vote_value  # noqa: E402
from blackbox_zo.setup.config import ConfigError  # noqa: E402

PROMPTS = ["What is a cat?", "Why is the sky blue?", "How do I make tea?", "Name a colour.", "What is rain?"]


def config(tmp_path, **over):
    data = {"prompts": PROMPTS, "prompts_per_direction": 2, "optim": {"lr": 0.05, "eps": 0.05, "n": 2, "seed": 3},
            "generation": {"max_new_tokens": 6, "temperature": 0.8, "top_p": 1.0}, "output": str(tmp_path / "run")}
    data.update(over)
    return load_prefer_config(data)


def gen_kwargs(cfg):
    g = cfg.generation
    return {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p}


def longer_judge():
    """A win-rate judge for the tests (named in configs as tests.test_prefer_app:longer_judge): longer wins."""
    return lambda prompts, completions: [float(len(c)) for c in completions]


@pytest.fixture
def base(tiny_llama):
    """(model, tokenizer, base state): every session starts from a fresh copy of the same base weights."""
    model, tok = tiny_llama
    return model, tok, copy.deepcopy(model.state_dict())


def open_session(base, cfg, judge=None) -> PreferSession:
    model, tok, state = base
    model.load_state_dict(state)  # back to the base weights, as a fresh process would load them
    session = PreferSession(cfg, TransformersLM(model, tok, batch_size=8), ParamSpace(model), cfg.output, judge=judge)
    session.start()
    session.wait_ready()
    return session


def client_for(session, **kw):
    client = TestClient(create_app(session, **kw), base_url="http://127.0.0.1")
    csrf = client.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
    client.headers["X-CSRF-Token"] = csrf
    return client


def next_pair(client, who="alice"):
    r = client.post("/api/next", json={"annotator": who})  # a POST with the CSRF token: it leases a pair
    assert r.status_code == 200, r.text
    return r.json()["next"]


def vote(client, pair_id, choice, who="alice"):
    return client.post("/api/vote", json={"pair_id": pair_id, "choice": choice, "annotator": who})


def vote_step(session, client, choices, who="alice"):
    """Vote every pair of the current step with the given choices (cycled); returns {pair_id: choice}."""
    done = {}
    total, voted = session.store.counts(session.at.step_count)
    for i in range(total - voted):
        p = next_pair(client, who)
        assert p["status"] == "pair", p
        done[p["pair_id"]] = choices[i % len(choices)]
        assert vote(client, p["pair_id"], done[p["pair_id"]], who).status_code == 200
    session.wait_ready()
    return done


def test_vote_values_are_from_the_plus_side():
    assert [vote_value(c, False) for c in ("left", "right", "tie", "both_bad")] == [1.0, -1.0, 0.0, 0.0]
    assert [vote_value(c, True) for c in ("left", "right")] == [-1.0, 1.0]


def test_pairs_are_theta_plus_and_minus_eps_z_with_one_sampling_seed(base, tmp_path):
    cfg = config(tmp_path)
    s = open_session(base, cfg)
    pairs = s.store.pairs(0)
    assert len(pairs) == 4 and {p.direction for p in pairs} == {0, 1}
    plus, minus = s._candidates()[:2]  # theta + eps z_0, theta - eps z_0
    assert plus.seed == minus.seed and plus.scale == -minus.scale > 0
    prompts = [p.prompt for p in pairs if p.direction == 0]
    seed = s.store._db.execute("SELECT sample_seed FROM pairs WHERE id = '0-0-0'").fetchone()[0]
    model, tok, state = base
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state)
    lm, space = TransformersLM(copy_, tok, batch_size=8), ParamSpace(copy_)
    with torch.no_grad():
        space.apply([(plus.seed, plus.scale)])  # the moves AskTell.visit makes: theta -> +eps z -> -eps z
    want_plus = lm.generate(prompts, seed=seed, **gen_kwargs(s.cfg))
    with torch.no_grad():
        space.apply([(plus.seed, minus.scale - plus.scale)])
    want_minus = lm.generate(prompts, seed=seed, **gen_kwargs(s.cfg))
    assert [p.plus for p in pairs if p.direction == 0] == want_plus
    assert [p.minus for p in pairs if p.direction == 0] == want_minus
    assert want_plus != want_minus  # eps is large enough here for the two sides to differ
    client = client_for(s)
    shown = next_pair(client)
    stored = next(p for p in pairs if p.id == shown["pair_id"])
    assert (shown["left"], shown["right"]) == ((stored.minus, stored.plus) if stored.swapped else (stored.plus, stored.minus))
    s.close()


def test_last_vote_takes_the_step_with_one_preference_per_direction(base, tmp_path):
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    before = ParamSpace(base[0]).state_dict()
    choices = vote_step(s, client, ["left", "right", "tie", "left"])
    assert s.at.step_count == 1
    record = json.loads((tmp_path / "run" / TRAJECTORY).read_text().splitlines()[1])
    pairs = {p.id: p for p in s.store.pairs(0)}
    want = [sum(vote_value(c, pairs[i].swapped) for i, c in choices.items() if pairs[i].direction == d) / 2 for d in (0, 1)]
    assert record["values"] == want  # pref_i = mean of the direction's votes, +1: the +eps side won
    after = ParamSpace(base[0]).state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before) == any(want)
    assert next_pair(client)["pair_id"].startswith("1-")
    progress = client.get("/api/progress").json()
    assert (progress["step"], progress["votes_left"], progress["pairs"]) == (1, 4, 4)
    s.close()


def test_rejected_requests_change_nothing(base, tmp_path):
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    first = next_pair(client)
    assert vote(client, first["pair_id"], "left").status_code == 200
    cases = [
        (vote(client, "no-such-pair", "left"), 404, "unknown pair id"),
        (vote(client, first["pair_id"], "right"), 409, "already voted"),
        (vote(client, next_pair(client)["pair_id"], "maybe"), 400, "choice must be one of"),
        (client.post("/api/vote", json={"pair_id": "0-0-1", "choice": "left"}), 400, "exactly pair_id"),
        (client.post("/api/vote", json={"pair_id": "0-0-1", "choice": "left", "annotator": "<b>"}), 400, "annotator"),
        (client.post("/api/vote", content=b"pair_id=0-0-1", headers={"Content-Type": "text/plain"}), 415, "JSON"),
        (client.post("/api/vote", json={"pair_id": "x" * 5000, "choice": "left", "annotator": "a"}), 413, "over 4096"),
        (client.post("/api/vote", json={"pair_id": "0-0-1", "choice": "left", "annotator": "a"},
                     headers={"X-CSRF-Token": "forged"}), 403, "CSRF"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.text, (status, response.text)
    assert len(s.store.votes()) == 1
    vote_step(s, client, ["left"])  # finish step 0
    stale = vote(client, "0-1-1", "left")  # voted already, in a finished step
    assert stale.status_code == 409
    s.store._db.execute("DELETE FROM votes WHERE pair_id = '0-1-1'")  # as if a pair of step 0 were still open
    finished = vote(client, "0-1-1", "left")
    assert finished.status_code == 409 and "finished" in finished.json()["error"]
    assert len(s.store.votes(1)) == 0
    s.close()


def test_two_annotators_never_get_the_same_pair(base, tmp_path):
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    a, b = next_pair(client, "alice"), next_pair(client, "bob")
    assert a["pair_id"] != b["pair_id"]
    assert next_pair(client, "alice")["pair_id"] == a["pair_id"]  # a reload shows the same pair
    r = vote(client, a["pair_id"], "left", who="bob")
    assert r.status_code == 409 and "another annotator" in r.json()["error"]
    seen = {a["pair_id"], b["pair_id"]}
    c, d = next_pair(client, "carol"), next_pair(client, "dave")
    seen |= {c["pair_id"], d["pair_id"]}
    assert len(seen) == 4 and next_pair(client, "erin") == {"status": "waiting"}
    for who, p in (("alice", a), ("bob", b), ("carol", c), ("dave", d)):
        assert vote(client, p["pair_id"], "right", who=who).status_code == 200
    s.wait_ready()
    assert s.at.step_count == 1
    assert sorted(v["annotator"] for v in s.store.votes(0)) == ["alice", "bob", "carol", "dave"]
    s.close()


def test_expired_lease_goes_to_another_annotator(base, tmp_path):
    s = open_session(base, config(tmp_path, lease_seconds=0.01))
    client = client_for(s)
    a = next_pair(client, "alice")
    time.sleep(0.05)
    assert next_pair(client, "bob")["pair_id"] == a["pair_id"]
    s.close()


def test_restart_continues_at_the_same_pair_with_votes_and_replayed_weights(base, tmp_path):
    cfg = config(tmp_path, steps=2)
    s = open_session(base, cfg)
    client = client_for(s)
    vote_step(s, client, ["left", "right"])
    held = next_pair(client)
    assert vote(client, held["pair_id"], "tie").status_code == 200
    pending = next_pair(client)
    pairs = s.store.pairs(1)
    s.close()

    s2 = open_session(base, cfg)  # fresh base weights; the trajectory is replayed
    client = client_for(s2)
    assert s2.at.step_count == 1 and s2.store.pairs(1) == pairs and len(s2.store.votes(1)) == 1
    assert next_pair(client) == pending  # the lease survives the restart: same pair, same sides
    vote_step(s2, client, ["right", "left"])
    assert s2.done and next_pair(client) == {"status": "done"}
    tuned = ParamSpace(base[0]).state_dict()  # theta_2: no pairs were generated after the last step
    s2.close()
    model, _, state = base
    model.load_state_dict(state)
    MeZO.replay(ParamSpace(model), tmp_path / "run" / TRAJECTORY)
    replayed = ParamSpace(model).state_dict()
    assert all(torch.equal(tuned[n], replayed[n]) for n in tuned)
    assert any(not torch.equal(tuned[n], state[n]) for n in tuned)


def test_restart_tells_a_step_whose_votes_were_all_in(base, tmp_path):
    cfg = config(tmp_path)
    s = open_session(base, cfg)
    for p in s.store.pairs(0):  # votes stored, but the server stopped before it took the step
        s.store.vote(p.id, "left", "alice", 0)
    s.close()
    s2 = open_session(base, cfg)
    assert s2.at.step_count == 1 and len(s2.store.pairs(1)) == 4
    s2.close()


def test_changed_prompts_are_refused_for_an_existing_run(base, tmp_path):
    open_session(base, config(tmp_path)).close()
    with pytest.raises(ValueError, match="prompts"):
        open_session(base, config(tmp_path, prompts=PROMPTS[:3]))


def test_export_writes_prompt_chosen_rejected_and_skips_ties(base, tmp_path):
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    choices = vote_step(s, client, ["left", "tie", "both_bad", "right"])
    pairs = {p.id: p for p in s.store.pairs(0)}
    s.close()
    counts = export_votes(tmp_path / "run", tmp_path / "votes.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "votes.jsonl").read_text().splitlines()]
    assert counts == {"written": 2, "tie": 1, "both_bad": 1} and len(rows) == 2
    decided = [(i, c) for i, c in choices.items() if c in ("left", "right")]
    for row, (pid, choice) in zip(rows, decided):
        p = pairs[pid]
        assert set(row) == {"prompt", "chosen", "rejected"} and row["prompt"] == p.prompt
        assert row["chosen"] == (p.left if choice == "left" else p.right)
        assert row["rejected"] == (p.right if choice == "left" else p.left)


def test_held_back_win_rate_is_recorded_after_each_step(base, tmp_path):
    cfg = config(tmp_path, winrate={"judge": "tests.test_prefer_app:longer_judge", "prompts": PROMPTS[:2], "samples": 2})
    s = open_session(base, cfg, judge=longer_judge())
    assert len(s.store.base_outputs()) == 4
    vote_step(s, client_for(s), ["left"])
    wr = s.progress()["winrate"]
    assert [step for step, _ in wr] == [1] and (8 * wr[0][1]).is_integer()  # 4 judgements, ties count half
    s.close()


def test_access_token_and_bind_rules(base, tmp_path):
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    s = open_session(base, config(tmp_path))
    token = "t" * 24
    client = TestClient(create_app(s, token=token), base_url="http://127.0.0.1")
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    r = client.get(f"/?token={token}", follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert client.get("/").status_code == 200  # the cookie now opens the page
    assert TestClient(create_app(s), base_url="http://evil.example").get("/").status_code == 400  # Host check
    s.close()


def test_page_headers_forbid_inline_scripts(base, tmp_path):
    s = open_session(base, config(tmp_path))
    r = TestClient(create_app(s), base_url="http://127.0.0.1").get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "innerHTML" not in TestClient(create_app(s), base_url="http://127.0.0.1").get("/static/page.js").text.replace(
        "never innerHTML", "")
    s.close()


@pytest.mark.parametrize("patch, message", [
    ({"prompts": []}, "prompts"),
    ({"optim": {"estimator": "spsa"}}, "optim.estimator"),
    ({"prompts_per_direction": 0}, "prompts_per_direction"),
    ({"colour": "red"}, "unknown key colour"),
    ({"winrate": {"judge": "nomodule", "prompts": ["a"]}}, "winrate.judge"),
])
def test_bad_configs_name_the_key(tmp_path, patch, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **patch)


def test_cli_refuses_a_public_host_without_token(tmp_path, capsys):
    from blackbox_zo.running.cli import main

    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"prompts": ["hi"], "output": str(tmp_path / "run")}))
    assert main(["prefer", str(cfg), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("grow, radius", [(None, 1.0), (2.0, 2.0)])
def test_split_votes_leave_the_example_radius_alone(base, tmp_path, grow, radius):
    """Trap: one vote for and one against a direction average to 0, which the adaptive radius reads as a
    plateau (eps doubles). examples/prefer.yaml sets radius_grow 1.0; with 2.0 the embedded model's answers
    were gibberish by step 6 (eps 0.16)."""
    example = load_prefer_config(Path(__file__).parents[1] / "examples" / "prefer.yaml").optim
    optim = {**{k: getattr(example, k) for k in ("seed", "n", "eps", "lr", "radius_grow")},
             **({} if grow is None else {"radius_grow": grow})}
    s = open_session(base, config(tmp_path, optim=optim))
    client = client_for(s)
    for p in s.store.pairs(0):
        plus_side, minus_side = ("right", "left") if p.swapped else ("left", "right")
        assert vote(client, p.id, plus_side if p.slot == 0 else minus_side).status_code == 200
    s.wait_ready()
    record = json.loads((tmp_path / "run" / TRAJECTORY).read_text().splitlines()[1])
    assert record["values"] == [0.0] * example.n
    assert {abs(c.scale) for c in s._candidates()} == {radius * example.eps}
    s.close()
