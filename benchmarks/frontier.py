"""Reward against drift: zeroth-order runs (the product's `run`) and TRL GRPO, each a frontier over checkpoints.

Both tune the embedded SmolLM2-135M-Instruct on the 32 TRAIN prompts for the same reward over greedy answers and
the same training wall time (`--budget` s, validation excluded). At >= 10 checkpoints each is read on the 32 DEV
prompts by the same code (`frontier_task.objective` + its `text_report`): mean reward, exact per-token KL(pi_theta
|| pi_0) over the vocabulary, held NLL under pi_0, repetition, distinct-2. For each drift budget (KL <= 0.05, 0.1,
0.2 nats/token) the best DEV checkpoint within the budget and the fluency rule (train.fluency_bound's defaults) is
chosen, then read once on the 192 held-back prompts: `reward_at_budget` maps budget -> held-back gain.

  zo    blackbox_zo.running.run.run on a config (frontier_recipes.RECIPES[--recipe] + --set overrides) with
        train.max_seconds = --budget: the run a user runs; the checkpoints are its validations (metrics.jsonl),
        the chosen ones rebuilt by `load_tuned(run, step)`.
  grpo  trl.GRPOTrainer, all weights, AdamW, 8 completions a step in groups of 4, temperature 1, --grpo-beta /
        --grpo-lr; a checkpoint every budget / --checkpoints s of training, saved to disk for the held-back read.

    OMP_NUM_THREADS=1 python benchmarks/frontier.py zo --recipe steer_anchor400 --reward vader --seed 0
    OMP_NUM_THREADS=1 python benchmarks/frontier.py grpo --grpo-beta 0 --reward vader --seed 0
    python benchmarks/frontier_table.py benchmarks/results/frontier_vader_*.json   # reward at budget, the plot

Peak memory: the process's peak RSS (VmHWM) over training, model load included, read before the held-back reads;
GRPO's includes the pi_0 copy its KL column needs (0.54 GB), ZO's steering and LoRA read pi_0 with the space off.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import frontier_task  # noqa: E402
import prompts as prompt_sets  # noqa: E402
from frontier_recipes import RECIPES  # noqa: E402

from blackbox_zo.setup.fluency_bound import FluencyBound  # noqa: E402

BUDGETS = (0.05, 0.1, 0.2)  # KL(pi_theta || pi_0) nats/token, fixed before any held-back row was read
HELD = "test+test2"  # 192 held-back prompts
RULE = FluencyBound()  # train.fluency_bound's defaults: the honest rule of a run's best step


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=["zo", "grpo"])
    p.add_argument("--reward", default="vader", choices=["vader", "personal", "numbers"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=300.0, help="training seconds (validation excluded)")
    p.add_argument("--checkpoints", type=int, default=12, help="grpo: checkpoints over the budget")
    p.add_argument("--recipe", default="steer_anchor400", choices=sorted(RECIPES))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="zo: config overrides, as the CLI's --set")
    p.add_argument("--grpo-beta", type=float, default=0.0)
    p.add_argument("--grpo-lr", type=float, default=1e-5)
    p.add_argument("--held", default=HELD, choices=sorted(prompt_sets.HELD), help="the held-back prompts")
    p.add_argument("--no-held", action="store_true", help="dev frontier only (the recipe search)")
    p.add_argument("--tag", default=None, help="results file name part (default: recipe or grpo settings)")
    p.add_argument("--log", default=None, help="grpo: recover the held-back reads of a run from its log ...")
    p.add_argument("--checkpoint-dir", default=None, help="... and its saved checkpoints")
    return p.parse_args(argv)


def rows(prompts: list[str]) -> list[dict]:
    return [{"prompt": p} for p in prompts]


def read_point(lm, reference, prompts: list[str], reward: str) -> dict:
    """The reward, drift and text numbers of greedy answers to `prompts` at `lm`'s weights (pi_0 = `reference`)."""
    objective = frontier_task.objective(reward)
    objective.use_reference(reference)
    score = objective.evaluate(lm, rows(prompts), seed=0)
    return {"reward": score.value, **objective.text_report(score, lm), "answers": score.info["answers"]}


def choose(curve: list[dict], start: dict, rule: FluencyBound = RULE) -> dict:
    """Per budget: the dev checkpoint with the highest reward among those within the budget and the fluency rule
    (step 0, the untuned model, is always within)."""
    chosen = {}
    for budget in BUDGETS:
        inside = [c for c in curve if c["kl_exact"] <= budget and not rule.breaches(start, c)]
        chosen[str(budget)] = max(inside, key=lambda c: (c["reward"], c["step"]))["step"]
    return chosen


def held_reads(load_at, reference, chosen: dict, args) -> dict:
    """Each chosen step (and step 0) read once on the held-back prompts; budget -> gain over step 0."""
    from blackbox_zo.lm import TransformersLM

    held = prompt_sets.HELD[args.held]
    reads = {0: read_point(reference, reference, held, args.reward)}
    for step in sorted(set(chosen.values()) - {0}):
        model, tok = load_at(step)
        reads[step] = read_point(TransformersLM(model, tok, batch_size=16), reference, held, args.reward)
    rule, start = RULE, reads[0]
    out = {}
    for budget, step in chosen.items():
        r = reads[step]
        out[budget] = {"step": step, "gain": r["reward"] - start["reward"], "kl_exact": r["kl_exact"],
                       "missed": rule.breaches(start, r), "text": {k: v for k, v in r.items() if k != "answers"},
                       "samples": r["answers"][:: len(held) // 4][:4]}
    return {"held_start": {k: v for k, v in start.items() if k != "answers"}, "held": out,
            "held_start_samples": start["answers"][:: len(held) // 4][:4]}


def zo(args) -> dict:
    from blackbox_zo.running.run import run
    from blackbox_zo.running.tuned import load_tuned
    from blackbox_zo.setup.overrides import apply_sets

    sections, eval_every = RECIPES[args.recipe]
    out = Path(tempfile.mkdtemp(prefix="bbzo-frontier-")) / "run"
    cfg = apply_sets({"model": {"name": "embedded", "batch_size": 16},
                      "objective": {"factory": "frontier_task:task", "args": {"reward": args.reward},
                                    **sections.get("objective", {})},
                      **{k: v for k, v in sections.items() if k != "objective"},
                      "optim": {**sections.get("optim", {}), "seed": args.seed, "maximize": True},
                      "train": {"steps": 10**6, "max_seconds": args.budget, "batch_size": 8, "eval_every": eval_every,
                                "seed": args.seed, "plot": False, "progress": False, **sections.get("train", {})},
                      "output": str(out)}, args.set)
    summary = run(cfg)
    peak = common.peak_bytes()
    start_row = json.loads((out / "start.json").read_text())
    start = {"step": 0, "reward": start_row["val"], **start_row["text"]}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [start] + [{"step": r["step"], "time_s": round(r["time"], 1), "reward": r["val"],
                        **{k[4:]: v for k, v in r.items() if k.startswith("val_")}} for r in metrics if "val" in r]
    chosen = choose(curve, start)
    result = {"method": "zo", "recipe": args.recipe, "config": cfg, "steps": summary["steps"],
              "seconds": summary["seconds"], "peak_bytes": peak, "curve": curve, "chosen": chosen}
    if not args.no_held:
        from blackbox_zo.lm import TransformersLM, load_model

        reference = TransformersLM(*load_model(), batch_size=16)
        result.update(held_reads(lambda step: load_tuned(out, step), reference, chosen, args))
    shutil.rmtree(out.parent, ignore_errors=True)
    return result


def grpo(args) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from blackbox_zo.lm import TransformersLM, load_model

    model, tok = load_model()
    reference = TransformersLM(*load_model(), batch_size=16)  # pi_0 for the KL column
    reward = frontier_task.reward_fn(args.reward)
    calls = {"n": 0}

    def reward_func(prompts, completions, **kw):
        calls["n"] += len(completions)
        return reward(prompts, [c[-1]["content"] if isinstance(c, list) else c for c in completions])

    reward_func.__name__ = args.reward
    ckpt = Path(tempfile.mkdtemp(prefix="bbzo-grpo-ckpt-"))
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompt_sets.TRAIN]})
    cfg = GRPOConfig(output_dir=str(ckpt / "trl"), max_steps=10**6, per_device_train_batch_size=8, num_generations=4,
                     max_completion_length=16, temperature=1.0, learning_rate=args.grpo_lr, beta=args.grpo_beta,
                     report_to="none", save_strategy="no", logging_steps=10**6, use_cpu=True, bf16=False, fp16=False,
                     seed=args.seed, dataloader_num_workers=0, disable_tqdm=True)
    dev = prompt_sets.DEV
    clock = {"t0": time.perf_counter(), "eval": 0.0, "next": 0.0, "step": 0}
    curve: list[dict] = []

    def checkpoint() -> None:
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            point = read_point(TransformersLM(model, tok, batch_size=16), reference, dev, args.reward)
        model.train()
        curve.append({"step": clock["step"], "time_s": round(t - clock["t0"] - clock["eval"], 1),
                      **{k: v for k, v in point.items() if k != "answers"}})
        model.save_pretrained(ckpt / f"step{clock['step']}", safe_serialization=True)
        print(json.dumps({"progress": curve[-1]}), file=sys.stderr, flush=True)
        clock["eval"] += time.perf_counter() - t
        clock["next"] += args.budget / args.checkpoints

    class Budget(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            clock["t0"] = time.perf_counter()
            checkpoint()

        def on_step_end(self, a, state, control, **kw):
            clock["step"] += 1
            train_s = time.perf_counter() - clock["t0"] - clock["eval"]
            done = train_s >= args.budget
            if done or train_s >= clock["next"]:
                checkpoint()
            control.should_training_stop = done

    trainer = GRPOTrainer(model=model, reward_funcs=reward_func, args=cfg, train_dataset=data, processing_class=tok,
                          callbacks=[Budget()])
    trainer.train()
    peak = common.peak_bytes()
    chosen = choose(curve, curve[0])
    result = {"method": "grpo", "trl": trl.__version__, "beta": args.grpo_beta, "lr": args.grpo_lr,
              "steps": clock["step"], "completions": calls["n"], "peak_bytes": peak, "curve": curve, "chosen": chosen}
    if not args.no_held:
        result.update(held_reads(lambda step: checkpoint_at(ckpt, step, tok), reference, chosen, args))
    shutil.rmtree(ckpt, ignore_errors=True)
    return result


def checkpoint_at(ckpt: Path, step: int, tok):
    """(model, tokenizer) of a GRPO checkpoint: the weights saved at `step`, the base model's tokenizer (trap: the
    checkpoints hold no tokenizer, so load_model(dir) refuses them)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(ckpt / f"step{step}").eval(), tok


def grpo_recovered(args) -> dict:
    """A GRPO run whose held-back reads failed after training (the tokenizer trap above): its dev curve from the
    progress lines of its log (--log), its checkpoints from --checkpoint-dir, read as grpo() would have."""
    from blackbox_zo.lm import TransformersLM, load_model

    lines = Path(args.log).read_text().splitlines()
    curve = [json.loads(line)["progress"] for line in lines if line.startswith('{"progress"')]
    chosen = choose(curve, curve[0])
    reference = TransformersLM(*load_model(), batch_size=16)
    result = {"method": "grpo", "beta": args.grpo_beta, "lr": args.grpo_lr, "steps": curve[-1]["step"],
              "peak_bytes": None, "curve": curve, "chosen": chosen,
              "recovered": "held-back reads from the saved checkpoints after the run's own held stage failed to load "
                           "them (no tokenizer saved); training peak not recorded"}
    result.update(held_reads(lambda step: checkpoint_at(Path(args.checkpoint_dir), step, reference.tokenizer),
                             reference, chosen, args))
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    result = zo(args) if args.method == "zo" else grpo_recovered(args) if args.log else grpo(args)
    tag = args.tag or (args.recipe if args.method == "zo" else f"grpo_beta{args.grpo_beta:g}_lr{args.grpo_lr:g}")
    split = "dev" if args.no_held else "held"
    payload = {"benchmark": "frontier", "git": common.git_commit(), "machine": common.machine_info(),
               "command": "python benchmarks/frontier.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "reward": args.reward, "seed": args.seed, "budget_s": args.budget, "budgets": list(BUDGETS),
               "wall_s": round(time.perf_counter() - t0, 1), **result}
    path = common.write_results("frontier", payload,
                                common.RESULTS_DIR / f"frontier_{split}_{args.reward}_{tag}_s{args.seed}.json")
    print(json.dumps({"wrote": str(path), "chosen": result["chosen"],
                      "held": {b: h["gain"] for b, h in result.get("held", {}).items()}}))
    return payload


if __name__ == "__main__":
    main()
