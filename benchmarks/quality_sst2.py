"""SST-2 quality at our scale: MeZO's Table 3 rows on the embedded SmolLM2-135M-Instruct (CPU budget).

Setting (MeZO, Malladi et al. 2023): SST-2, k training examples per class (k=16 default; k=512 is the
paper's other setting, `--k 512`), prompt "<sentence> It was [great|terrible]", the label word with the
higher next-token log-probability is the prediction. Accuracy is reported on a FIXED, class-balanced subset
of validation.tsv (same examples for every row and seed): `--eval-set dev` = the 200 sentences drawn with
seed 0 that optimiser settings were chosen on; `--eval-set test` (default) = `--val-size` sentences drawn
with seed 1 from the REST of validation.tsv, never used to choose anything. Rows with seeds report mean +-
std over seeds, each seed drawing its own k-shot training sample (as the paper does) and its own noise seed.
`--budget S` trains every ZO and FT row for S seconds of wall time (equal-time rows) instead of `--steps`.

Rows (`--rows`, in this order; seeds are interleaved so a partial run has one seed of every row first):
  zero_shot          no tuning
  calibrated_cf      zero-shot, content-free calibration (objectives: calibrate="content_free")
  calibrated_batch   zero-shot, batch calibration over the validation subset (calibrate="batch")
  calibrated_ref     zero-shot, calibrated with each seed's 2k training inputs (calibrate="reference"; --seeds)
  zo_default         `bz.MeZO(model, maximize=True)`, library defaults (or --spec), objective = minibatch accuracy
  zo_default_tb      as zo_default, objective = minibatch accuracy, ties decided by the gold word's probability
  zo_default_ce      `bz.MeZO(model)`, library defaults (or --spec), objective = cross-entropy of the label word
  zo_acc             MeZO's raw rule, paper lr/eps (rule=raw, fixed radius), minibatch accuracy (non-differentiable)
  zo_ce              MeZO's raw rule, paper lr/eps, cross-entropy of the label word (train_objective="nll")
  ft_adam            backprop fine-tuning, AdamW + cross-entropy of the label word, same k-shot data (paper's FT)
  zo_lora            MeZO's raw rule over LoRA (r=8, q/v) only, objective `--space-objective` (default cross-entropy)
  zo_prefix          MeZO's raw rule over 5 prefix tokens only, objective `--space-objective`
  bbt_cma            Black-Box Tuning: CMA-ES (bz.CMA) on a `--subspace`-dim z, prefix = prefix0 + A z (bz.subspace;
                     `--bbt-space norm`: the final norm's weight instead, scored over a cached trunk),
                     objective `--bbt-objective` (default the label-word margin); `--holdout H` selects the step on
                     H of the k training examples per class held back (no other labelled data chooses anything)
  bbt_es             the same subspace and objective with MeZO's population ES (estimator population, n = lambda/2)

MeZO's paper runs 100k steps (batch 16) per ZO row and 1000 steps of FT. The defaults here are a tiny CPU
budget (a few tens of steps) chosen so the whole run fits in ~30-40 min on a loaded 2-core CPU; scale up
with --steps / --seeds / --val-size on a GPU (`--device cuda`).

    python benchmarks/quality_sst2.py --data DATA
    python benchmarks/quality_sst2.py --data DATA --rows zo_default,ft_adam --budget 600   # equal wall time
    python benchmarks/quality_sst2.py --data DATA --steps 1000 --seeds 5 --device cuda      # GPU
    python benchmarks/quality_sst2.py --rows zero_shot,calibrated_cf,calibrated_batch         # 1 eval
    python benchmarks/quality_sst2.py --data DATA --rows zo_default_ce --budget 600 --calibrate content_free
        --trunk-cache --space 'include=layers[.]2[89][.]|model[.]norm' --spec eps=0.01 lr=0.003   # top 2 layers

Results are written after every run to benchmarks/results/quality_sst2.json (+ quality_sst2.png).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from spec_args import add_space_arg, add_spec_arg, space_overrides, spec_overrides  # noqa: E402

ROWS = ("zero_shot", "calibrated_cf", "calibrated_batch", "calibrated_ref", "zo_default", "zo_default_tb", "zo_default_ce", "zo_acc", "zo_ce",
        "ft_adam", "zo_lora", "zo_prefix", "bbt_cma", "bbt_es")
SEEDED = {"calibrated_ref", "zo_default", "zo_default_tb", "zo_default_ce", "zo_acc", "zo_ce", "ft_adam"}  # --seeds; space rows use --space-seeds
LABELS = {
    "zero_shot": "zero-shot", "calibrated_cf": "zero-shot + content-free calib.",
    "calibrated_batch": "zero-shot + batch calib.", "calibrated_ref": "zero-shot + training-input calib.",
    "zo_default": "ZO defaults (accuracy)",
    "zo_default_tb": "ZO defaults (accuracy, ties by p(gold))",
    "zo_default_ce": "ZO defaults (cross-entropy)", "zo_acc": "MeZO raw full (accuracy)",
    "zo_ce": "MeZO raw full (cross-entropy)", "ft_adam": "FT AdamW (cross-entropy, backprop)",
    "zo_lora": "MeZO LoRA", "zo_prefix": "MeZO prefix", "bbt_cma": "BBT: CMA-ES on a subspace (--bbt-space)",
    "bbt_es": "population ES on the same subspace",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.tsv and validation.tsv, or builtin:sentiment / "
                   "builtin:topics (the project's own tasks, objectives.builtin; use --eval-set all, and --task topics)")
    p.add_argument("--model", default="embedded", help="'embedded' or a local Hugging Face model folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma list from {list(ROWS)}")
    p.add_argument("--k", type=int, default=16, help="training examples per class (MeZO: 16 or 512)")
    p.add_argument("--eval-set", default="test", choices=["test", "dev", "train-dev", "all"],
                   help="test: --val-size sentences disjoint from dev; dev: the 200 settings were chosen on; "
                        "train-dev: 200 sentences of train.tsv outside every seed's k-shot sample (validation.tsv unused); "
                        "all: every row of validation.tsv (for a task nothing was chosen on, e.g. a built-in one)")
    p.add_argument("--val-size", type=int, default=872, help="size of the balanced test subset")
    p.add_argument("--seeds", type=int, default=3, help="seeds for zo_default(_ce), zo_acc, zo_ce, ft_adam")
    p.add_argument("--space-seeds", type=int, default=1, help="seeds for zo_lora, zo_prefix")
    p.add_argument("--steps", type=int, default=20, help="MeZO steps per ZO run (paper: 100k); ignored with --budget")
    p.add_argument("--budget", type=float, default=None, help="training seconds per ZO/FT run (equal wall time)")
    p.add_argument("--batch", type=int, default=32, help="examples per ZO step / forward batch (paper: 16)")
    p.add_argument("--lr", type=float, default=1e-6, help="MeZO lr, full parameters (paper grid 1e-6, 1e-7)")
    p.add_argument("--eps", type=float, default=1e-3, help="MeZO eps, full parameters (paper: 1e-3)")
    p.add_argument("--lora-lr", type=float, default=5e-5, help="paper grid 1e-4, 5e-5")
    p.add_argument("--lora-eps", type=float, default=1e-2)
    p.add_argument("--prefix-lr", type=float, default=1e-2, help="paper grid 1e-2, 1e-3")
    p.add_argument("--prefix-eps", type=float, default=1e-1)
    p.add_argument("--space-objective", default="nll", choices=["nll", "accuracy"],
                   help="objective of zo_lora / zo_prefix (default cross-entropy)")
    add_spec_arg(p)
    add_space_arg(p)
    p.add_argument("--default-lora", type=int, default=0, metavar="R",
                   help="zo_default rows tune LoRA adapters of rank R (q/v) instead of all weights (0: all weights)")
    p.add_argument("--trunk-cache", action="store_true",
                   help="ZO rows whose space leaves the bottom layers frozen reuse those layers' outputs (lm/trunk.py)")
    p.add_argument("--calibrate", default=None, choices=["content_free", "batch", "reference"],
                   help="calibrated label-word scores for the tuned rows (training objective and evaluation)")
    p.add_argument("--ft-epochs", type=int, default=5, help="AdamW epochs over the 2k examples (--budget: until time)")
    p.add_argument("--ft-lr", type=float, default=1e-5, help="AdamW learning rate (paper grid 1e-5, 5e-5)")
    p.add_argument("--ft-batch", type=int, default=8)
    p.add_argument("--template", default=None, help="prompt for every row, e.g. 'Review: {sentence}\\nSentiment:' "
                   "(default MeZO's '{sentence} It was'; choose it on the dev split: sst2_templates.py)")
    p.add_argument("--task", default=None, metavar="JSON",
                   help="a task spec file (template, label_words, optional ensemble of more prompts) or a built-in task "
                        "name (objectives.tasks) instead of --template / --label-words, e.g. examples/sst2_prompts.json")
    p.add_argument("--label-words", default=None, metavar="NEG,POS", help="label words for classes 0,1 (default terrible,great)")
    p.add_argument("--subspace", type=int, default=500, help="bbt rows: dimension of z (BBT: 500); 0: search the space itself")
    p.add_argument("--bbt-space", default="prefix",
                   help="bbt rows: what A z moves: prefix (BBT's soft prompt), norm (the final norm's weight, scored over "
                        "a cached trunk with --trunk-cache), steer:L1,L2 (steering vectors after those layers; needs "
                        "--subspace-scale)")
    p.add_argument("--subspace-scale", type=float, default=None,
                   help="bbt rows: std of each coordinate of A z for z ~ N(0, I) (default: the spread of theta0)")
    p.add_argument("--prefix-tokens", type=int, default=5, help="bbt rows: prefix length")
    p.add_argument("--bbt-objective", default="margin", choices=["margin", "nll", "accuracy"])
    p.add_argument("--margin-cap", type=float, default=None,
                   help="bbt rows with the margin objective: per-example margins count up to this cap (a hinge)")
    p.add_argument("--cma-sigma", type=float, default=1.0, help="bbt rows: sigma0 (CMA) / eps (ES) in z units")
    p.add_argument("--cma-popsize", type=int, default=None, help="bbt rows: lambda (default 4 + 3 ln d)")
    p.add_argument("--es-lr", type=float, default=0.3, help="bbt_es: step per z coordinate at radius eps")
    p.add_argument("--bbt-steps", type=int, default=None,
                   help="bbt rows: stop after this many generations (early stopping chosen on the dev split), "
                        "or at --budget seconds if that comes first")
    p.add_argument("--holdout", type=int, default=0, help="bbt rows: select the step on H held-back examples per class")
    p.add_argument("--select-every", type=int, default=5, help="bbt rows with --holdout: steps between selections")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "quality_sst2.json"))
    args = p.parse_args(argv)
    if args.data.startswith("builtin:"):  # written once into a temporary folder in the layout the recipes read
        import tempfile

        from objectives.builtin import write_tsv

        folder = tempfile.mkdtemp(prefix="bz_builtin_")
        write_tsv(args.data.split(":", 1)[1], folder)
        args.data = folder
    return args


# --- data and model --------------------------------------------------------------------------------
DEV_SIZE = 200  # the balanced validation sentences (seed 0) optimiser settings were chosen on


def eval_examples(args) -> list[dict]:
    """The fixed evaluation subset: dev (200, seed 0) or test (--val-size, seed 1, disjoint from dev)."""
    from pathlib import Path as P

    from objectives import kshot, load_examples

    if args.eval_set == "all":
        return load_examples(P(args.data) / "validation.tsv")
    if args.eval_set == "train-dev":  # choose settings without touching validation.tsv at all
        train = load_examples(P(args.data) / "train.tsv")
        used = {ex["sentence"] for s in range(max(args.seeds, args.space_seeds)) for ex in kshot(train, args.k, s)}
        return kshot([ex for ex in train if ex["sentence"] not in used], DEV_SIZE // 2, 7)
    val = load_examples(P(args.data) / "validation.tsv")
    dev = kshot(val, DEV_SIZE // 2, 0)
    if args.eval_set == "dev":
        return dev
    seen = {(ex["sentence"], ex["label"]) for ex in dev}
    rest = [ex for ex in val if (ex["sentence"], ex["label"]) not in seen]
    return kshot(rest, args.val_size // 2, 1)


def task_spec(args):
    """"sst2" (MeZO's prompt), a --task JSON spec, or a task dict with --template / --label-words in its place."""
    from objectives.tasks import TEMPLATES

    if args.task is not None:
        if args.template or args.label_words:
            raise SystemExit("--task names the prompts: drop --template / --label-words")
        if not Path(args.task).exists() and args.task in TEMPLATES:
            return args.task
        return {"name": "sst2", **json.loads(Path(args.task).read_text())}
    if args.template is None and args.label_words is None:
        return "sst2"
    words = args.label_words.split(",") if args.label_words else list(TEMPLATES["sst2"]["label_words"].values())
    template = args.template.replace("\\n", "\n") if args.template else TEMPLATES["sst2"]["template"]
    return {"name": "sst2", "template": template, "label_words": {"0": words[0], "1": words[1]}}


def task_for(args, seed: int, train_objective: str | None, holdout: int = 0, margin_cap: float | None = None) -> dict:
    from objectives.recipes import classification

    task = classification(task=task_spec(args), data=args.data, k=args.k, val_size=DEV_SIZE, seed=seed,
                          train_objective=train_objective, calibrate=args.calibrate, holdout=holdout,
                          margin_cap=margin_cap)
    if holdout:
        task["held"] = task["val"]  # held back from the 2k training examples: what selects the step
    task["reference"] = task["train"] + task.get("held", [])  # the 2k training inputs (calibrate="reference")
    task["val"] = eval_examples(args)  # the same examples for every row and seed
    task["spec"] = task_spec(args)
    return task


def load(args):
    from blackbox_zo.lm import load_model

    return load_model(args.model, device=args.device)


def lm_for(model, tok, args, space=None):
    """The scoring LM; with --trunk-cache and a space that leaves the bottom layers alone, their outputs are cached."""
    from blackbox_zo.lm import TransformersLM
    from blackbox_zo.lm.trunk import trunk_start

    start = trunk_start(model, space.tensors.values()) if space is not None and args.trunk_cache else None
    return TransformersLM(model, tok, batch_size=args.batch, trunk_cache=start)


def evaluate(lm, task) -> tuple[float, float, dict]:
    """Accuracy on the fixed subset with the task's objective, plus every other calibration from the same outputs
    (and, for a prompt ensemble, its first prompt alone as "first_prompt/<calibration>")."""
    from objectives import get_task
    from objectives.base import prompts_for

    t0 = time.perf_counter()
    spec = task["spec"]
    full = get_task(spec).objective(calibrate="content_free")
    outputs = full.outputs(lm, task["val"])
    views = outputs["views"] if "views" in outputs else [outputs]
    for prompt, view in zip(full.prompts, views):  # the training inputs' scores under the same weights
        view["reference"] = lm.label_word_logits(prompts_for(prompt.template, task["reference"]),
                                                 prompt.verbalizer.word_list).tolist()
    first = {k: v for k, v in spec.items() if k != "ensemble"} if isinstance(spec, dict) and spec.get("ensemble") else None
    readings = {}
    for name, t, out in (("", get_task(spec), outputs), ("first_prompt/", first and get_task(first), views[0])):
        for calibrate in ((None, "content_free", "reference") if t else ()):
            objective = t.objective(calibrate=calibrate, reference=task["reference"] if calibrate == "reference" else None)
            readings[name + (calibrate or "none")] = objective.score(task["val"], out).value
    acc = task["val_objective"].score(task["val"], outputs).value
    return float(acc), time.perf_counter() - t0, readings


# --- rows ------------------------------------------------------------------------------------------
def zero_shot_rows(args) -> list[dict]:
    """One forward pass over the validation subset scores all three zero-shot rows."""
    from objectives import get_task

    task = task_for(args, 0, None)
    model, tok = load(args)
    lm = lm_for(model, tok, args)
    t = get_task(task_spec(args))
    cf = t.objective(calibrate="content_free")
    t0 = time.perf_counter()
    outputs = cf.outputs(lm, task["val"])
    eval_s = time.perf_counter() - t0
    rows = []
    for row, calibrate in (("zero_shot", None), ("calibrated_cf", "content_free"), ("calibrated_batch", "batch")):
        acc = t.objective(calibrate=calibrate).score(task["val"], outputs).value
        rows.append({"row": row, "seed": None, "accuracy": float(acc), "steps": 0, "train_s": 0.0,
                     "eval_s": round(eval_s, 1), "note": "one shared forward pass over the subset"})
    return rows


def calibrated_ref_row(args, seed: int) -> dict:
    """Zero-shot, calibrated with this seed's 2k training inputs (their labels unread): no tuning."""
    task = task_for(args, seed, None)
    model, tok = load(args)
    _, eval_s, readings = evaluate(lm_for(model, tok, args), task)
    return {"row": "calibrated_ref", "seed": seed, "accuracy": readings["reference"], "accuracy_by_calibration": readings,
            "steps": 0, "train_s": 0.0, "eval_s": round(eval_s, 1)}


def zo_row(args, row: str, seed: int) -> dict:
    from blackbox_zo import MeZO, ParamSpace, derive_seed
    from blackbox_zo.running.trainer import batch_for_step

    lora_r = 8 if row == "zo_lora" else args.default_lora if row.startswith("zo_default") else 0  # 0: no LoRA
    kind = "prefix" if row == "zo_prefix" else "lora" if lora_r else "full"
    objective = {"zo_acc": "accuracy", "zo_default": "accuracy", "zo_default_tb": "tiebreak", "zo_ce": "nll",
                 "zo_default_ce": "nll"}.get(row, args.space_objective)
    task = task_for(args, seed, None if objective == "accuracy" else objective)
    model, tok = load(args)
    if kind == "lora":
        from blackbox_zo.weights.spaces import lora_space

        model, space = lora_space(model, r=lora_r, alpha=2 * lora_r)
        lr, eps = args.lora_lr, args.lora_eps
    elif kind == "prefix":
        from blackbox_zo.weights.spaces import prefix_space

        model, space = prefix_space(model, tok, num_tokens=5)
        lr, eps = args.prefix_lr, args.prefix_eps
    else:
        space = ParamSpace(model, **space_overrides(args.space))
        lr, eps = args.lr, args.eps
    lm = lm_for(model, tok, args, space)
    maximize = bool(getattr(task["objective"], "maximize", True))
    if row.startswith("zo_default"):  # what a user who sets nothing gets, plus any --spec override
        opt = MeZO(space, seed=seed, maximize=maximize, **spec_overrides(args.spec))
    else:  # MeZO's paper rule: raw projected gradient, fixed radius
        opt = MeZO(space, seed=seed, maximize=maximize, rule="raw", radius_grow=1.0, lr=lr, eps=eps)
    values, radii = [], []
    t0 = time.perf_counter()
    while (time.perf_counter() - t0 < args.budget) if args.budget else (opt.step_count < args.steps):
        t = opt.step_count
        batch = batch_for_step(task["train"], args.batch, derive_seed(seed, "data"), t)
        values.append(opt.step(lambda: task["objective"].evaluate(lm, batch).value))
        radii.append(opt.last.eps)
    train_s = time.perf_counter() - t0
    acc, eval_s, both = evaluate(lm, task)
    return {"row": row, "seed": seed, "accuracy": acc, "accuracy_by_calibration": both, "steps": opt.step_count, "train_s": round(train_s, 1),
            "eval_s": round(eval_s, 1), "objective": objective, "space": kind, "spec": opt.spec.to_dict(),
            "tuned_elements": space.numel(), "train_objective_first5": mean(values[:5]),
            "train_objective_last5": mean(values[-5:]), "radius_last": radii[-1] if radii else None,
            "nonfinite_steps": opt.nonfinite_steps}


def bbt_row(args, row: str, seed: int) -> dict:
    """Black-Box Tuning on our model: a prefix reparametrised as prefix0 + A z, z searched by CMA-ES or population ES."""
    import blackbox_zo as bz
    from blackbox_zo import derive_seed
    from blackbox_zo.faces.cma import VectorAccess
    from blackbox_zo.running.trainer import batch_for_step

    objective = args.bbt_objective
    task = task_for(args, seed, None if objective == "accuracy" else objective, holdout=args.holdout,
                    margin_cap=args.margin_cap)
    model, tok = load(args)
    model, inner = bbt_space(args, model, tok)
    space = bz.subspace(inner, dim=args.subspace, seed=seed, scale=args.subspace_scale) if args.subspace else inner
    lm = lm_for(model, tok, args, space)
    maximize = bool(getattr(task["objective"], "maximize", True))
    if row == "bbt_cma":
        opt = bz.CMA(space, sigma0=args.cma_sigma, popsize=args.cma_popsize, seed=seed, maximize=maximize)
        settings = {"sigma0": args.cma_sigma, "popsize": opt.popsize}
    else:  # the same number of evaluations per step as CMA-ES: n antithetic pairs = lambda / 2
        from blackbox_zo.step.cma import default_popsize

        n = max(1, (args.cma_popsize or default_popsize(args.subspace)) // 2)
        opt = bz.MeZO(space, seed=seed, maximize=maximize, estimator="population", n=n, eps=args.cma_sigma, lr=args.es_lr)
        settings = {"eps": args.cma_sigma, "n": n, "lr": args.es_lr}
    held = task.get("held")
    held_objective = task["val_objective"]
    access = VectorAccess(space)  # z of a subspace, or the space's own numbers flattened (--subspace 0)
    best = (held_objective.evaluate(lm, held).value, 0, access.get()) if held else None
    selections, values = [], []
    t0 = time.perf_counter()
    limit = args.bbt_steps if args.bbt_steps is not None else None if args.budget else args.steps  # generations
    while (not args.budget or time.perf_counter() - t0 < args.budget) and (limit is None or opt.step_count < limit):
        t = opt.step_count
        batch = batch_for_step(task["train"], args.batch, derive_seed(seed, "data"), t)
        values.append(opt.step(lambda: task["objective"].evaluate(lm, batch).value))
        if held and opt.step_count % args.select_every == 0:
            acc = held_objective.evaluate(lm, held).value
            selections.append((opt.step_count, acc))
            if acc >= best[0]:  # a tie goes to the later step, as the trainer's best step does
                best = (acc, opt.step_count, access.get())
    train_s = time.perf_counter() - t0
    last_acc, _, _ = evaluate(lm, task) if held else (None, None, None)
    if held:
        access.set(best[2])  # the selected step's z
    acc, eval_s, both = evaluate(lm, task)
    return {"row": row, "seed": seed, "accuracy": acc, "accuracy_by_calibration": both, "steps": opt.step_count,
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "objective": objective, "space": args.bbt_space,
            "subspace": args.subspace, "subspace_scale": args.subspace_scale, "margin_cap": args.margin_cap, "prefix_tokens": args.prefix_tokens,
            "trunk_cache": lm.trunk_cache.start if lm.trunk_cache else None, "settings": settings,
            "tuned_elements": space.numel(), "train_objective_first5": mean(values[:5]),
            "train_objective_last5": mean(values[-5:]), "holdout_per_class": args.holdout,
            "train_examples": len(task["train"]), "selected_step": best[1] if held else None,
            "accuracy_last_step": last_acc, "holdout_selections": selections}


def bbt_space(args, model, tok):
    """(model, the space A z moves): BBT's prefix, the final norm's weight, or steering vectors (--bbt-space)."""
    if args.bbt_space == "prefix":
        from blackbox_zo.weights.spaces import prefix_space

        return prefix_space(model, tok, num_tokens=args.prefix_tokens)
    if args.bbt_space == "norm":  # logit_w - logit_w' = sum_j g_j n_j(x) (E_w - E_w')_j: a linear probe in g
        from blackbox_zo import ParamSpace

        return model, ParamSpace(model, include=[r"^model\.norm\."])
    if args.bbt_space.startswith("steer:"):
        from blackbox_zo import steering_space

        return steering_space(model, tok, layers=[int(i) for i in args.bbt_space[6:].split(",")])
    raise SystemExit(f"--bbt-space {args.bbt_space!r}: expected prefix, norm or steer:L1,L2")


def ft_row(args, seed: int) -> dict:
    """Backprop fine-tuning: AdamW on the cross-entropy of the label word after the prompt (all weights)."""
    import random

    import torch

    from blackbox_zo.lm.tokens import split_context_target
    from objectives import get_task

    torch.manual_seed(seed)
    task = task_for(args, seed, None)
    model, tok = load(args)
    lm = lm_for(model, tok, args)
    t = get_task(task_spec(args))
    words = t.label_words
    pairs = [split_context_target(tok, t.prompt(ex), " " + words[str(ex["label"])], lm.max_length)
             for ex in task["train"]]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.ft_lr, weight_decay=0.0)
    rng = random.Random(seed)
    losses, steps, epochs = [], 0, 0
    model.train()
    t0 = time.perf_counter()
    while (time.perf_counter() - t0 < args.budget) if args.budget else (epochs < args.ft_epochs):
        epochs += 1
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), args.ft_batch):
            if args.budget and time.perf_counter() - t0 >= args.budget:
                break
            batch = [pairs[i] for i in order[start:start + args.ft_batch]]
            ids, mask, pos = lm._left_pad([c + tg for c, tg in batch])
            labels = torch.full_like(ids, -100)
            width = ids.shape[1]
            for r, (_, tg) in enumerate(batch):
                labels[r, width - len(tg):] = ids[r, width - len(tg):]
            loss = model(input_ids=ids, attention_mask=mask, position_ids=pos, labels=labels, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            steps += 1
    train_s = time.perf_counter() - t0
    model.eval()
    acc, eval_s, both = evaluate(lm, task)
    return {"row": "ft_adam", "seed": seed, "accuracy": acc, "accuracy_by_calibration": both, "steps": steps, "train_s": round(train_s, 1),
            "eval_s": round(eval_s, 1), "objective": "cross-entropy (backprop)", "lr": args.ft_lr,
            "epochs": epochs, "batch": args.ft_batch, "tuned_elements": sum(p.numel() for p in params),
            "train_loss_first": mean(losses[:2]), "train_loss_last": mean(losses[-2:])}


# --- bookkeeping -----------------------------------------------------------------------------------
def mean(xs):
    xs = [x for x in xs if x is not None]
    return float(sum(xs) / len(xs)) if xs else None


def summarize(runs: list[dict]) -> dict:
    out = {}
    for row in ROWS:
        rs = [r for r in runs if r["row"] == row and "accuracy" in r]
        if not rs:
            continue
        accs = [r["accuracy"] for r in rs]
        out[row] = {"label": LABELS[row], "n": len(rs), "mean": statistics.fmean(accs),
                    "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "accuracies": accs,
                    "steps": rs[0]["steps"], "train_s_mean": statistics.fmean(r["train_s"] for r in rs),
                    "eval_s_mean": statistics.fmean(r["eval_s"] for r in rs)}
    return out


def write(args, runs, plan, t_start) -> Path:
    payload = {"benchmark": "quality_sst2", "git": common.git_commit(), "machine": common.machine_info(),
               "settings": {k: v for k, v in vars(args).items()}, "planned": plan,
               "completed": len(runs), "elapsed_s": round(time.perf_counter() - t_start, 1),
               "summary": summarize(runs), "runs": runs,
               "note": "MeZO's paper: 100k ZO steps / 1000 FT steps per row; here a tiny CPU budget"}
    path = common.write_results("quality_sst2", payload, args.out)
    plot(payload, Path(args.out).with_suffix(".png"))
    return path


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = payload["summary"]
    if not summary:
        return
    rows = list(summary)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    means = [100 * summary[r]["mean"] for r in rows]
    stds = [100 * summary[r]["std"] for r in rows]
    bars = ax.bar(range(len(rows)), means, yerr=stds, capsize=4,
                  color=["tab:gray" if r.startswith(("zero", "cal")) else "tab:red" if r == "ft_adam" else "tab:blue"
                         for r in rows])
    for b, r in zip(bars, rows):
        s = summary[r]
        ax.text(b.get_x() + b.get_width() / 2, 2, f"n={s['n']}\n{s['steps']} st", ha="center", fontsize=7, color="white")
    ax.axhline(50, color="k", lw=0.5, ls="--")
    ax.set_xticks(range(len(rows)), [summary[r]["label"] for r in rows], rotation=25, ha="right", fontsize=8)
    s = payload["settings"]
    ax.set_ylabel(f"accuracy (%), {s.get('eval_set', 'dev')} subset of SST-2 validation.tsv")
    ax.set_title(f"SST-2 k={s['k']}, SmolLM2-135M, CPU budget ({s['steps']} ZO steps; paper: 100k)", fontsize=9)
    ax.set_ylim(0, 100)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = sorted(set(rows) - set(ROWS))
    if bad:
        raise SystemExit(f"unknown rows {bad}; choose from {list(ROWS)}")
    plan: list[tuple[str, int | None]] = []
    if any(r in rows for r in ("zero_shot", "calibrated_cf", "calibrated_batch")):
        plan.append(("zero_shot_all", None))
    for seed in range(max(args.seeds, args.space_seeds)):
        for r in rows:
            if r in SEEDED and seed < args.seeds or r in ("zo_lora", "zo_prefix", "bbt_cma", "bbt_es") and seed < args.space_seeds:
                plan.append((r, seed))
    runs: list[dict] = []
    t_start = time.perf_counter()
    for row, seed in plan:
        print(f"[{time.perf_counter() - t_start:7.0f}s] {row} seed={seed}", flush=True)
        try:
            if row == "zero_shot_all":
                new = [r for r in zero_shot_rows(args) if r["row"] in rows]
            elif row.startswith("bbt_"):
                new = [bbt_row(args, row, seed)]
            elif row == "ft_adam":
                new = [ft_row(args, seed)]
            elif row == "calibrated_ref":
                new = [calibrated_ref_row(args, seed)]
            else:
                new = [zo_row(args, row, seed)]
        except Exception as e:  # keep the other rows; the error is recorded
            new = [{"row": row, "seed": seed, "error": f"{type(e).__name__}: {e}"}]
        for r in new:
            print("   ", json.dumps(r), flush=True)
        runs.extend(new)
        write(args, runs, [f"{r}:{s}" for r, s in plan], t_start)
    summary = summarize(runs)
    print(f"\n{'row':<36} {'acc (%)':>14} {'n':>3} {'steps':>6} {'train s':>8} {'eval s':>7}")
    for s in summary.values():
        print(f"{s['label']:<36} {100 * s['mean']:6.1f} +- {100 * s['std']:4.1f} {s['n']:>3} {s['steps']:>6} "
              f"{s['train_s_mean']:>8.0f} {s['eval_s_mean']:>7.0f}")
    print(f"results: {args.out}")
    return summary


if __name__ == "__main__":
    main()
