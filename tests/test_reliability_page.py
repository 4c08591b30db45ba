"""The preference page cannot be steered by another site: state changes only on POST with the CSRF token,
every API call from a foreign Origin is refused, and malformed or deeply nested JSON is a 400, not a 500."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from blackbox_zo.prefer.app import create_app  # noqa: E402
from tests.test_prefer_app import base, client_for, config, next_pair, open_session  # noqa: E402,F401


def test_cross_site_gets_lease_nothing(base, tmp_path):  # noqa: F811
    """Issue case: twenty cross-site GET /api/next used to lease every pair for 600 s; now GET changes nothing."""
    s = open_session(base, config(tmp_path))
    attacker = TestClient(create_app(s), base_url="http://127.0.0.1")  # an <img src> or fetch from a visited site
    for i in range(20):
        r = attacker.get("/api/next", params={"annotator": f"ghost{i}"}, headers={"Origin": "http://evil.example"})
        assert r.status_code in (403, 405)
        assert attacker.get("/api/next", params={"annotator": f"ghost{i}"}).status_code == 405  # GET never leases
    leases = s.store._db.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
    assert leases == 0
    assert next_pair(client_for(s), "alice")["status"] == "pair"  # the real annotator still gets a pair
    s.close()


def test_post_needs_the_csrf_token_and_a_same_origin(base, tmp_path):  # noqa: F811
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    no_token = TestClient(create_app(s), base_url="http://127.0.0.1")
    assert no_token.post("/api/next", json={"annotator": "mallory"}).status_code == 403
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        r = client.post("/api/next", json={"annotator": "mallory"}, headers={"Origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.text, origin
    r = client.post("/api/next", json={"annotator": "mallory"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert client.get("/api/progress", headers={"Origin": "http://evil.example"}).status_code == 403
    assert s.store._db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    same = client.post("/api/next", json={"annotator": "alice"}, headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200 and same.json()["next"]["status"] == "pair"  # the page's own origin passes
    s.close()


@pytest.mark.parametrize("body", ["[" * 2000 + "]" * 2000, '{"a":' * 600 + "1" + "}" * 600, "{\"pair_id\": \"\\ud800",
                                  "\xff\xfe"])
def test_nested_or_broken_json_is_a_400(base, tmp_path, body):  # noqa: F811
    """Issue case: 2,000 levels of nesting (4 KB) raised RecursionError, a 500; any unreadable body is a 400."""
    s = open_session(base, config(tmp_path))
    client = client_for(s)
    for path in ("/api/vote", "/api/next"):
        r = client.post(path, content=body.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and ("not valid JSON" in r.text or "expected a JSON object" in r.text), (path, r.text)
    assert s.store.votes() == []
    s.close()
