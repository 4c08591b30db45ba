"""One preference run: generate each step's pairs with AskTell, hand them to annotators, tell the votes.

A step of the pairwise estimator has n directions; each direction is shown on k prompts, as the completions
at theta + eps z and theta - eps z with one sampling seed. When every pair of the step is voted, the mean
vote per direction (+1: the +eps side won) goes to `AskTell.tell_values`, which moves the weights and logs
the step to trajectory.jsonl. A restart replays that log and carries on with the stored pairs and votes.
"""

from __future__ import annotations

import random
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from blackbox_zo.faces.ask_tell import AskTell
from blackbox_zo.prefer.config import PreferConfig
from blackbox_zo.prefer.store import Pair, VoteRejected, VoteStore
from blackbox_zo.prefer.winrate import verdicts, win_rate
from blackbox_zo.setup.run_files import TRAJECTORY
from blackbox_zo.weights.noise import derive_seed

VOTES = "votes.sqlite"


def votes_only(out_plus: Any, out_minus: Any) -> float:
    """The pairwise estimator's compare: never called, preferences arrive through tell_values."""
    raise RuntimeError("preferences come from annotators' votes through AskTell.tell_values")


class PreferSession:
    """Owns the model, the AskTell state and the vote store; every method is safe to call from any thread."""

    def __init__(self, cfg: PreferConfig, lm: Any, space: Any, run_dir: str | Path, judge: Any = None,
                 log: Callable[[str], None] | None = None):
        self.cfg, self.lm, self.judge = cfg, lm, judge
        self.log = log or (lambda message: None)
        self.run_dir = Path(run_dir)
        self.store = VoteStore(self.run_dir / VOTES)
        self.store.check_or_set_meta("pairs", {
            "prompts": cfg.prompts, "prompts_per_direction": cfg.prompts_per_direction,
            "generation": cfg.to_dict()["generation"], "directions": cfg.directions, "seed": cfg.seed})
        self._lock = threading.RLock()  # guards the weights, AskTell and the current step
        self._flags = threading.Lock()  # guards the worker hand-off below
        self._worker: threading.Thread | None = None
        self._again = self._preparing = self._running = False
        self.error: str | None = None
        self._asked: tuple[int, list] = (-1, [])
        if cfg.winrate is not None and not self.store.base_outputs():
            # weights are still the base ones here: the trajectory is replayed below
            prompts = self._held_back_prompts()
            self.log(f"generating the base model's answers to {len(prompts)} held-back prompts (for the win-rate) …")
            self.store.set_base_outputs(list(zip(prompts, self._held_back_outputs(prompts))))
        self.at = AskTell(space, spec=cfg.optim, trajectory=self.run_dir / TRAJECTORY, resume=True,
                          compare=votes_only)

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Tell the current step if all its votes are in, and prepare the next one, in a background thread."""
        with self._flags:
            self._again = True
            if not self._running:
                self._running = self._preparing = True
                self._worker = threading.Thread(target=self._advance, name="prefer-step", daemon=True)
                self._worker.start()

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Block until no step is being told or prepared (tests and the CLI use it)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                raise TimeoutError(f"step preparation still running after {timeout} s")
        if self.error:
            raise RuntimeError(self.error)

    def close(self, wait: bool = True) -> None:
        """Finish the background work first (wait=True), or leave it to die with the process (Ctrl-C): pairs
        being generated are not stored yet and a restart generates them again, identically."""
        if not wait and self.busy:
            self.log("stopped while a step was being prepared; the next start prepares it again")
            return
        self.wait_ready()
        if hasattr(self.at, "close"):
            self.at.close()
        self.store.close()

    @property
    def busy(self) -> bool:
        """True while the background worker tells a step, measures the win-rate or generates pairs."""
        return self._running

    @property
    def done(self) -> bool:
        return bool(self.cfg.steps) and self.at.step_count >= self.cfg.steps

    # --- annotators ------------------------------------------------------------------------------------
    def next_pair(self, annotator: str) -> dict:
        """What this annotator sees next: a pair (the one it holds, else a free one), or a status."""
        if self.error:
            return {"status": "error", "message": self.error}
        if self.done:
            return {"status": "done"}
        step = self.at.step_count
        if self._preparing or self.store.counts(step)[0] == 0:
            return {"status": "generating"}
        got = self.store.lease(step, annotator, self.cfg.lease_seconds)
        if got is None:
            return {"status": "generating"}  # all voted: the step is being told
        if got == "waiting":
            return {"status": "waiting"}  # every unvoted pair is held by another annotator
        return {"status": "pair", "pair_id": got.id, "step": got.step, "prompt": got.prompt,
                "left": got.left, "right": got.right}

    def vote(self, pair_id: str, choice: str, annotator: str) -> float:
        """Store one vote (VoteRejected if invalid); the last vote of a step takes the step."""
        if self._preparing:
            raise VoteRejected(409, "the next step is being prepared; this pair is no longer open")
        with self._lock:
            step = self.at.step_count
            value = self.store.vote(pair_id, choice, annotator, step)
            total, voted = self.store.counts(step)
            if voted == total:
                self.start()
            return value

    def progress(self) -> dict:
        """The progress line and the trend: steps taken, votes left, per-step preference strength, win-rates."""
        step = self.at.step_count
        total, voted = self.store.counts(step)
        strength = []
        for t in range(step):
            prefs = self.store.preferences(t, self.cfg.directions)
            strength.append(sum(abs(p) for p in prefs) / len(prefs))  # mean |pref_i|: how decisive the votes were
        return {"step": step, "steps": self.cfg.steps, "votes_left": total - voted, "pairs": total,
                "done": self.done, "strength": strength, "winrate": self.store.winrates(),
                "winrate_configured": self.cfg.winrate is not None, "instructions": self.cfg.instructions}

    # --- steps -----------------------------------------------------------------------------------------
    def _advance(self) -> None:
        """Worker loop: tell a fully voted step, measure the held-back win-rate, generate the next step's pairs."""
        try:
            while True:
                with self._flags:
                    if not self._again:
                        self._running = self._preparing = False
                        return
                    self._again, self._preparing = False, True
                with self._lock:
                    if self._tell_if_complete() and self.cfg.winrate is not None:
                        self._record_winrate()  # at the new theta: generating the next pairs leaves it perturbed
                    if not self.done and self.store.counts(self.at.step_count)[0] == 0:
                        self._generate_step()
                self._preparing = False
        except Exception as e:  # shown on the page; visit() restored the weights
            self.error = f"{type(e).__name__}: {e}"
            with self._flags:
                self._running = self._preparing = False
            traceback.print_exc()

    def _tell_if_complete(self) -> bool:
        step = self.at.step_count
        total, voted = self.store.counts(step)
        if total == 0 or voted < total:
            return False
        self._candidates()  # AskTell expects an ask() before each tell
        prefs = self.store.preferences(step, self.cfg.directions)
        self.at.tell_values(prefs)  # one preference per direction, +1: the +eps side won
        self.log(f"step {step + 1} taken from {voted} votes: preference per direction {[round(p, 3) for p in prefs]}")
        return True

    def _generate_step(self) -> None:
        """All pairs of the current step, generated now and stored, so a restart shows the same texts."""
        t, cfg = self.at.step_count, self.cfg
        k, n = cfg.prompts_per_direction, cfg.directions
        order = random.Random(derive_seed(cfg.seed, "prompts", t)).sample(range(len(cfg.prompts)), len(cfg.prompts))
        swap = random.Random(derive_seed(cfg.seed, "swap", t))
        cands = self._candidates()
        pairs, seeds = [], []
        for i in range(n):
            prompts = [cfg.prompts[order[(i * k + j) % len(order)]] for j in range(k)]
            seed = derive_seed(cfg.seed, "sample", t, i)  # one sampling seed for both sides of the pair
            texts = {}
            for cand in cands[2 * i: 2 * i + 2]:  # theta + eps z_i, theta - eps z_i, visited in ask() order
                with self.at.visit(cand):
                    texts[cand.scale > 0] = self._generate(prompts, seed)
            for j, prompt in enumerate(prompts):
                pairs.append(Pair(f"{t}-{i}-{j}", t, i, j, prompt, texts[True][j], texts[False][j], swap.random() < 0.5))
                seeds.append(seed)
        self.store.add_pairs(pairs, seeds)
        self.log(f"step {t + 1}: {len(pairs)} pairs ready ({n} directions x {k} prompts)")

    def _candidates(self) -> list:
        """The current step's candidates, asked once per step (after a restart the stored pairs skip generation)."""
        if self._asked[0] != self.at.step_count:
            self._asked = (self.at.step_count, self.at.ask())
        return self._asked[1]

    def _generate(self, prompts: list[str], seed: int) -> list[str]:
        g = self.cfg.generation
        return self.lm.generate(prompts, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                                top_p=g.top_p, seed=seed)

    # --- held-back win-rate ----------------------------------------------------------------------------
    def _held_back_prompts(self) -> list[str]:
        w = self.cfg.winrate
        return [p for p in w.prompts for _ in range(w.samples)]

    def _held_back_outputs(self, prompts: list[str]) -> list[str]:
        return self._generate(prompts, derive_seed(self.cfg.seed, "held-back"))  # same seed for base and tuned

    def _record_winrate(self) -> None:
        base = self.store.base_outputs()
        prompts = [p for p, _ in base]
        tuned = self._held_back_outputs(prompts)
        judged = verdicts(self.judge, prompts, tuned, [b for _, b in base])  # +1: the tuned answer wins
        value = win_rate(judged)
        self.store.add_winrate(self.at.step_count, value, len(judged))
        self.log(f"after step {self.at.step_count}: win-rate of tuned vs base on {len(judged)} held-back answers {value:.2f}")
