"""Reward tuning, zeroth-order (blackbox_zo MeZO) vs TRL GRPO: held-back reward vs time, completions, memory.

Both methods tune the embedded SmolLM2-135M-Instruct (float32, all weights) on the same 32 generic training
prompts (benchmarks.prompts.TRAIN; chat template applied by both), for the same reward (`--reward`):
vader = VADER positivity (compound score in [-1, 1], `objectives.VaderPositivity`), or personal = the
keyword rule benchmarks.rules.personal_reward (share of first/second-person pronouns, in [0, 1]), with short
completions (`--max-new-tokens`). Every `--eval-interval` seconds of TRAINING time (evaluation time is
excluded from the clock) each method is scored on HELD-BACK prompts with the same function: greedy
generation through `blackbox_zo.lm.TransformersLM`, mean reward (`--prompts test`: the 64 TEST prompts;
`test+test2`: those and 128 more, 192 in all, each set's reward too; `dev`: the 32 DEV prompts that settings were
chosen on). After training, a fresh copy of the untuned model (pi_0) reads the first and the last held answers:
mean NLL per token, repeated word and token trigrams, distinct-2 and length before and after
(`objectives.text_metrics`), 3 sample answers, and the honest gain (`honest_gain.py`: the gain counted only when
NLL rose <= 0.3 nats/token, repetition <= 0.02 and distinct-2 fell <= 0.05).

  zo    `bz.MeZO(model, maximize=True)` with the library's defaults (override with `--spec key=value`); per
        step `--zo-batch` prompts, each generated at theta +- eps z (greedy by default; with a temperature
        `--zo-temperature` > 0 both sides share one sampling seed): 2 * zo-batch completions per step.
  grpo  trl.GRPOTrainer, `--grpo-batch` completions per step in groups of `--grpo-generations` per prompt,
        temperature 1.0, beta `--grpo-beta` (0 = TRL's default, no reference model), AdamW.

Each method runs in its own fresh Python process; peak memory is the kernel's VmHWM read from
/proc/self/status at the end: "training peak" after resetting the mark once the model is loaded, and
"process peak" (ru_maxrss, since start, model loading included).

    python benchmarks/reward_vs_grpo.py                      # both, 240 s of training each, VADER
    python benchmarks/reward_vs_grpo.py --methods zo --budget 600 --reward personal
    python benchmarks/reward_vs_grpo.py --methods zo --spec rule=raw radius_grow=1 lr=1e-6   # MeZO's raw rule
    python benchmarks/reward_vs_grpo.py --methods zo --budget 600 --steer 10,20   # steering vectors, not weights
    OMP_NUM_THREADS=1 python benchmarks/reward_vs_grpo.py --methods grpo --grpo-beta 0.04 --reward personal \
        --budget 600 --eval-interval 600 --prompts test+test2      # an issue-34 row: 192 prompts, honest gain

Results: benchmarks/results/grpo_reward.json and grpo_reward.png.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import prompts as prompt_sets  # noqa: E402
import rules  # noqa: E402
from honest_gain import honest_gain  # noqa: E402
from spec_args import add_space_arg, add_spec_arg, space_overrides, spec_overrides, tuned_space  # noqa: E402

TRAIN_PROMPTS = prompt_sets.TRAIN


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="zo,grpo", help="comma list from zo, zo_bon, grpo")
    p.add_argument("--reward", default="vader", choices=["vader", "personal"])
    p.add_argument("--prompts", default="test", choices=sorted(prompt_sets.HELD),
                   help="held-back prompts to score on (test+test2: 192, with each set's reward as well)")
    p.add_argument("--budget", type=float, default=240.0, help="training seconds per method (eval excluded)")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps")
    p.add_argument("--eval-interval", type=float, default=60.0, help="training seconds between held-back evals")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zo-batch", type=int, default=8, help="prompts per ZO step (2x completions)")
    p.add_argument("--kl", type=float, default=0.0,
                   help="zo: the KL brake's beta (reward - beta x KL-hat against pi_0 = the model with the space "
                        "switched off, blackbox_zo.lm.UntunedLM; --steer only); 0 = no brake")
    p.add_argument("--zo-temperature", type=float, default=0.0,
                   help="ZO decoding temperature while tuning (0 = greedy, the library's recipe; >0 shares a seed per pair)")
    add_spec_arg(p)
    add_space_arg(p, steer=True)
    p.add_argument("--bon-k", type=int, default=4, help="zo_bon: completions sampled per training prompt per round")
    p.add_argument("--bon-steps", type=int, default=32, help="zo_bon: ZO steps on one round's winners")
    p.add_argument("--bon-temperature", type=float, default=1.0, help="zo_bon: sampling temperature of a round")
    p.add_argument("--grpo-batch", type=int, default=8, help="completions per GRPO step")
    p.add_argument("--grpo-generations", type=int, default=4, help="completions per prompt (GRPO group)")
    p.add_argument("--grpo-lr", type=float, default=1e-5)
    p.add_argument("--grpo-beta", type=float, default=0.0)
    p.add_argument("--grpo-no-checkpointing", action="store_true",
                   help="turn off gradient checkpointing (TRL's GRPOConfig turns it on by default; with it on, "
                        "generation runs without a KV cache)")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "grpo_reward.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- shared pieces ---------------------------------------------------------------------------------
def reward_fn(name: str):
    """The reward function (TRL signature) named by --reward."""
    if name == "vader":
        from objectives import VaderPositivity

        return VaderPositivity()
    return rules.personal_reward


def held_prompts(args) -> list[str]:
    return prompt_sets.HELD[args.prompts]


class CountingReward:
    """The reward of --reward, counting the completions it scores (= completions generated for training)."""

    def __init__(self, name: str):
        self.fn = reward_fn(name)
        self.__name__ = name
        self.count = 0

    def __call__(self, prompts, completions, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]  # TRL chat completions
        self.count += len(texts)
        return self.fn(prompts, texts)


def heldout(model, tok, args) -> dict:
    import torch

    from blackbox_zo.lm import TransformersLM

    held = held_prompts(args)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        texts = TransformersLM(model, tok, batch_size=16).generate(held, max_new_tokens=args.max_new_tokens,
                                                                   temperature=0.0)
    model.train(was_training)
    rewards = reward_fn(args.reward)(held, texts)
    out = {"reward": sum(rewards) / len(rewards), "samples": texts[:3], "answers": texts}
    if "+" in args.prompts:  # each set's mean too (the sets are consecutive in `held`)
        start, out["by_set"] = 0, {}
        for name in args.prompts.split("+"):
            k = len(prompt_sets.HELD[name])
            out["by_set"][name] = sum(rewards[start:start + k]) / k
            start += k
    return out


def held_quality(args, curve: list[dict]) -> dict:
    """What tuning did to the held answers: text metrics of the first and last evaluation, each answer's mean NLL
    per token under pi_0 (a fresh copy of the untuned model, loaded after the peak was read), the honest gain,
    and 3 sample answers before / after (spread over the topics)."""
    from blackbox_zo.lm import TransformersLM, load_model
    from objectives import reference_nll, text_metrics

    held = held_prompts(args)
    reference = TransformersLM(*load_model(), batch_size=16)  # reads each answer after the chat-templated prompt
    first, last = curve[0], curve[-1]
    nll = [reference_nll(reference, held, c["answers"]) for c in (first, last)]  # each answer's, read once
    before, after = (text_metrics(c["answers"], nll=n) for c, n in zip((first, last), nll))
    picks = [i * len(held) // 3 for i in range(3)]
    by_set = {}
    if "+" in args.prompts:  # each set's own bounds (the 3x-longer check asks for dev and test separately)
        start = 0
        for name in args.prompts.split("+"):
            k = len(prompt_sets.HELD[name])
            part = slice(start, start + k)
            b, a = (text_metrics(c["answers"][part], nll=n[part]) for c, n in zip((first, last), nll))
            by_set[name] = {"text_before": b, "text_after": a,
                            "honest_gain": honest_gain(first["by_set"][name], last["by_set"][name], b, a)}
            start += k
    return {"text_before": before, "text_after": after, **({"by_set": by_set} if by_set else {}),
            "honest_gain": honest_gain(first["heldout_reward"], last["heldout_reward"], before, after),
            "sample_answers": [{"prompt": held[i], "before": first["answers"][i], "after": last["answers"][i]}
                               for i in picks]}


class Clock:
    """Training time = wall time minus the time spent in held-back evaluations."""

    def __init__(self, args, model, tok, counter):
        self.args, self.model, self.tok, self.counter = args, model, tok, counter
        self.t0 = time.perf_counter()
        self.eval_s = 0.0
        self.next_eval = args.eval_interval
        self.curve: list[dict] = []
        self.steps = 0

    def train_s(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_s

    def evaluate(self) -> None:
        t = time.perf_counter()
        train_s = self.train_s()
        h = heldout(self.model, self.tok, self.args)
        from objectives import text_metrics

        self.curve.append({"train_s": round(train_s, 1), "step": self.steps, "completions": self.counter.count,
                           "heldout_reward": h["reward"], **({"by_set": h["by_set"]} if "by_set" in h else {}),
                           "text": text_metrics(h["answers"]), "samples": h["samples"], "answers": h["answers"]})
        shown = {k: v for k, v in self.curve[-1].items() if k != "answers"}
        print(json.dumps({"progress": shown}), file=sys.stderr, flush=True)
        self.eval_s += time.perf_counter() - t

    def after_step(self) -> bool:
        """Count a step, evaluate when due; True when the budget is spent."""
        self.steps += 1
        done = self.train_s() >= self.args.budget or (self.args.max_steps is not None and self.steps >= self.args.max_steps)
        if done or self.train_s() >= self.next_eval:
            self.evaluate()
            while self.next_eval <= self.train_s():
                self.next_eval += self.args.eval_interval
        return done


def memory() -> dict:
    return {"training_peak_bytes": common.peak_bytes(),
            "process_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# --- workers -----------------------------------------------------------------------------------------
def zo_worker(args) -> dict:
    from blackbox_zo import MeZO
    from blackbox_zo.lm import TransformersLM, UntunedLM, load_model
    from blackbox_zo.running.trainer import batch_for_step, value_of
    from blackbox_zo.weights.noise import derive_seed
    from objectives import Generation
    from objectives.rewards import Reward

    t0 = time.perf_counter()
    model, tok = load_model()
    lm = TransformersLM(model, tok, batch_size=2 * args.zo_batch)
    counter = CountingReward(args.reward)
    data = [{"prompt": p} for p in TRAIN_PROMPTS]
    model, space, tuned = tuned_space(model, tok, args)
    brake = {"kl": args.kl, "reference": UntunedLM(lm, space)} if args.kl else {}  # pi_0: the space switched off
    objective = Reward(counter, generation=Generation(max_new_tokens=args.max_new_tokens,
                                                      temperature=args.zo_temperature), name=args.reward, **brake)
    opt = MeZO(space, maximize=True, seed=args.seed, **spec_overrides(args.spec))
    setup_s = time.perf_counter() - t0
    scope = "training (VmHWM reset after model load)" if common.reset_peak() else "process"
    clock = Clock(args, model, tok, counter)
    clock.evaluate()
    train_rewards = []
    while True:
        t = opt.step_count
        batch = batch_for_step(data, args.zo_batch, args.seed, t)
        sample_seed = derive_seed(args.seed, "sample", t)
        train_rewards.append(opt.step(lambda: value_of(objective.evaluate(lm, batch, seed=sample_seed))))
        if clock.after_step():
            break
    opt.close()
    mem = memory()
    return {"method": "zo", "setup_s": round(setup_s, 1), "steps": clock.steps, "completions": counter.count,
            "train_s": round(clock.train_s(), 1), "eval_s": round(clock.eval_s, 1), "curve": clock.curve,
            "train_reward_first5": sum(train_rewards[:5]) / len(train_rewards[:5]),
            "train_reward_last5": sum(train_rewards[-5:]) / len(train_rewards[-5:]),
            "settings": {"prompts_per_step": args.zo_batch, "completions_per_step": 2 * args.zo_batch,
                         "spec": opt.spec.to_dict(), "kl": args.kl, "temperature": args.zo_temperature, "tuned": tuned,
                         "radius_last": opt.last.eps if opt.last else None,
                         "steer_rms": [round(float(v.pow(2).mean().sqrt()), 4) for v in space.tensors.values()]
                         if args.steer else None},
            "peak_scope": scope, **mem, **held_quality(args, clock.curve)}


def zo_bon_worker(args) -> dict:
    """Best-of-k rounds (objectives.BestOfN): sample k completions per training prompt at theta, keep the winners,
    then --bon-steps ZO steps on their cross-entropy; the sampling counts as training time."""
    from blackbox_zo import MeZO, ParamSpace
    from blackbox_zo.lm import TransformersLM, load_model
    from blackbox_zo.lm.trunk import trunk_start
    from blackbox_zo.running.trainer import batch_for_step, value_of
    from blackbox_zo.weights.noise import derive_seed
    from objectives import Generation
    from objectives.best_of_n import BestOfN
    from objectives.rewards import Reward

    t0 = time.perf_counter()
    model, tok = load_model()
    counter = CountingReward(args.reward)
    bon = BestOfN(Reward(counter, generation=Generation(max_new_tokens=args.max_new_tokens), name=args.reward),
                  k=args.bon_k, temperature=args.bon_temperature)
    space = ParamSpace(model, **space_overrides(args.space))
    opt = MeZO(space, maximize=False, seed=args.seed, **spec_overrides(args.spec))
    start = trunk_start(model, space.tensors.values())  # None when every layer is tuned
    lm = TransformersLM(model, tok, batch_size=32, trunk_cache=start)
    rows = [{"prompt": p} for p in TRAIN_PROMPTS]
    setup_s = time.perf_counter() - t0
    scope = "training (VmHWM reset after model load)" if common.reset_peak() else "process"
    clock = Clock(args, model, tok, counter)
    clock.evaluate()
    rounds, targets, losses = [], [], []
    while True:
        t = opt.step_count
        if not targets or (t - rounds[-1]["step"]) >= args.bon_steps:
            if rounds:  # how far the round's steps took the cross-entropy of its winners (minibatch means)
                done = losses[rounds[-1]["step"]:]
                rounds[-1].update(loss_first4=sum(done[:4]) / len(done[:4]), loss_last4=sum(done[-4:]) / len(done[-4:]))
            targets, stats = bon.refresh(lm, rows, seed=derive_seed(args.seed, "sample", len(rounds)))
            rounds.append({"step": t, "train_s": round(clock.train_s(), 1), **stats})
            print(json.dumps({"round": rounds[-1]}), file=sys.stderr, flush=True)
            if not targets:  # nothing beat its group: sample again, but not forever
                if len(rounds) >= 3 and not any(r["kept"] for r in rounds[-3:]):
                    raise SystemExit("zo_bon: 3 rounds in a row kept no winner; the reward gives every sample one value")
                continue
        batch = batch_for_step(targets, args.zo_batch, args.seed, t)
        losses.append(opt.step(lambda: value_of(bon.evaluate(lm, batch))))
        if clock.after_step():
            break
    opt.close()
    mem = memory()
    return {"method": "zo_bon", "setup_s": round(setup_s, 1), "steps": clock.steps, "completions": counter.count,
            "train_s": round(clock.train_s(), 1), "eval_s": round(clock.eval_s, 1), "curve": clock.curve,
            "rounds": rounds, "loss_first5": sum(losses[:5]) / len(losses[:5]),
            "loss_last5": sum(losses[-5:]) / len(losses[-5:]),
            "settings": {"k": args.bon_k, "temperature": args.bon_temperature, "steps_per_round": args.bon_steps,
                         "targets_per_step": args.zo_batch, "spec": opt.spec.to_dict(),
                         "tuned": space_overrides(args.space) or "all weights", "trunk_cached_below_layer": start},
            "peak_scope": scope, **mem, **held_quality(args, clock.curve)}


def grpo_worker(args) -> dict:
    import tempfile

    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from blackbox_zo.lm import load_model

    t0 = time.perf_counter()
    model, tok = load_model()
    counter = CountingReward(args.reward)
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in TRAIN_PROMPTS]})
    cfg = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bbzo-grpo-"), max_steps=100000, per_device_train_batch_size=args.grpo_batch,
        num_generations=args.grpo_generations, max_completion_length=args.max_new_tokens, temperature=1.0,
        learning_rate=args.grpo_lr, beta=args.grpo_beta, report_to="none", save_strategy="no", logging_steps=10**6,
        use_cpu=True, bf16=False, fp16=False, seed=args.seed, dataloader_num_workers=0, disable_tqdm=True,
        **({"gradient_checkpointing": False} if args.grpo_no_checkpointing else {}),
    )
    holder: dict = {}

    class Budget(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            holder["clock"] = Clock(args, model, tok, counter)
            holder["clock"].evaluate()

        def on_step_end(self, a, state, control, **kw):
            if holder["clock"].after_step():
                control.should_training_stop = True

    trainer = GRPOTrainer(model=model, reward_funcs=counter, args=cfg, train_dataset=data, processing_class=tok,
                          callbacks=[Budget()])
    setup_s = time.perf_counter() - t0
    scope = "training (VmHWM reset after model load)" if common.reset_peak() else "process"
    trainer.train()
    mem = memory()
    clock = holder["clock"]
    return {"method": "grpo", "trl": trl.__version__, "setup_s": round(setup_s, 1), "steps": clock.steps,
            "completions": counter.count, "train_s": round(clock.train_s(), 1), "eval_s": round(clock.eval_s, 1),
            "curve": clock.curve,
            "settings": {"completions_per_step": args.grpo_batch, "num_generations": args.grpo_generations,
                         "lr": args.grpo_lr, "beta": args.grpo_beta, "temperature": 1.0, "optimizer": "AdamW",
                         "gradient_checkpointing": bool(cfg.gradient_checkpointing),
                         "tuned": "all weights"},
            "peak_scope": scope, **mem, **held_quality(args, clock.curve)}


# --- driver ------------------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, r in results.items():
        if "curve" not in r:
            continue
        label = f"{method} (training peak {common.gib(r['training_peak_bytes'])} GiB)"
        for ax, key in zip(axes, ("train_s", "completions")):
            ax.plot([c[key] for c in r["curve"]], [c["heldout_reward"] for c in r["curve"]], "o-", label=label)
    axes[0].set_xlabel("training wall time (s, eval excluded)")
    axes[1].set_xlabel("completions generated for training")
    for ax in axes:
        ax.set_ylabel("held-back mean reward (greedy)")
        ax.legend(fontsize=8)
    fig.suptitle("SmolLM2-135M, reward tuning, zeroth-order (zo) vs TRL GRPO, 2-core CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        res = {"zo": zo_worker, "zo_bon": zo_bon_worker, "grpo": grpo_worker}[args.worker](args)
        print(json.dumps(res))
        return res
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(f"running {method} ...", flush=True)
        res = common.run_fresh(Path(__file__), [*passthrough, "--worker", method], timeout=args.budget * 6 + 1800)
        results[method] = res
        print(json.dumps({k: v for k, v in res.items() if k not in ("curve", "sample_answers")}), flush=True)
        payload = {"benchmark": "reward_vs_grpo", "git": common.git_commit(), "machine": common.machine_info(),
                   "settings": {k: v for k, v in vars(args).items() if k != "worker"},
                   "train_prompts": TRAIN_PROMPTS, "held_prompts": held_prompts(args), "results": results}
        common.write_results("grpo_reward", payload, args.out)
        plot(results, Path(args.out).with_suffix(".png"))
    return results


if __name__ == "__main__":
    main()
