"""Preference tuning with a rule judge: win-rate of the tuned model against the base model, with a sign test.

Why: issue 13's preference target (tuned-vs-base win-rate >= 0.65 on held-back prompts, p < 0.01) for the
library's defaults. The judge (--judge guarded, benchmarks.rules.guarded_plain_words_judge) prefers the
completion with the shorter mean word length and ties only when both are equal, so nearly every comparison is
informative; an answer with fewer than 6 distinct words loses to one with more (--judge plain drops that guard:
the defaults gamed it in 600 s by answering "A:\nA:\nA:" to everything).

Each step: 8 training prompts (benchmarks.prompts.TRAIN), completions at theta +- eps z with one
shared seed (greedy by default, --temperature, --max-new-tokens), the judge's mean verdict is the preference the pairwise
estimator follows (`bz.MeZO(model, maximize=True, estimator="pairwise", compare=judge)`, every other setting
the default unless --spec). Scoring: greedy completions of the held-back prompts (--prompts test: the 64
TEST prompts; test2: 128 more, written later; test+test2: both, each set also on its own; dev: the 32 DEV
prompts used to choose settings) by the tuned and the base model, judged
tuned vs base; wins / losses / ties, win-rate = wins / (wins + losses), two-sided binomial test (scipy).
Beside it (issue 34): held NLL per token under the untuned model, repeated word / token trigrams, distinct-2 and
length of the base and tuned answers, and the honest gain (`honest_gain.py`): win-rate - 0.5 (the untuned model
against itself) counted only while the tuned answers stay inside the fluency bound.

    OMP_NUM_THREADS=1 python benchmarks/preference_vs_base.py --budget 600
    OMP_NUM_THREADS=1 python benchmarks/preference_vs_base.py --prompts dev --steps 30 --spec lr=3e-4
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import prompts as prompt_sets  # noqa: E402
import rules  # noqa: E402
from honest_gain import honest_gain  # noqa: E402
from spec_args import add_space_arg, add_spec_arg, spec_overrides, tuned_space  # noqa: E402

HELD = prompt_sets.HELD
JUDGES = {"plain": rules.plain_words_judge, "guarded": rules.guarded_plain_words_judge}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default="test", choices=sorted(HELD),
                   help="held-back prompts to score on (test+test2: 192, with each set's row as well)")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds (wall clock, scoring excluded)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: budget only)")
    p.add_argument("--batch", type=int, default=8, help="training prompts per step")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.0,
                   help="decoding temperature while tuning (0 = greedy, the library's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", default="guarded", choices=sorted(JUDGES), help="rule judge for tuning and scoring")
    p.add_argument("--fluency-slack", type=float, default=None,
                   help="tune through objectives.FluencyGuard: the untuned model (with --steer the same model with "
                        "its vectors off, blackbox_zo.lm.UntunedLM; else a second copy) reads each answer "
                        "after the bare prompt; bound = 90th percentile of the NLL per token of the untuned answers to "
                        "the TRAIN prompts + this slack (scoring still uses --judge alone)")
    p.add_argument("--guard-reads", default="bare", choices=["bare", "chat"],
                   help="the guard reads each answer after the bare prompt (fewer tokens a step) or through the chat "
                        "template, as generate() wrote it and as the held answers' NLL is measured")
    p.add_argument("--repeat-slack", type=float, default=None,
                   help="with --fluency-slack: the guard also bounds each answer's share of repeated word trigrams "
                        "at the 90th percentile of the untuned answers' + this slack")
    add_spec_arg(p)
    add_space_arg(p, steer=True)
    p.add_argument("--out", default=str(common.RESULTS_DIR / "preference_vs_base.json"))
    return p.parse_args(argv)


def judged(rule, tuned: list[str], base: list[str]) -> dict:
    """Judge tuned vs base per prompt with `rule`; win-rate over decided pairs and the two-sided sign test."""
    from scipy.stats import binomtest

    verdicts = [rule("", t, b) for t, b in zip(tuned, base)]
    wins, losses, ties = verdicts.count(1), verdicts.count(-1), verdicts.count(0)
    decided = wins + losses
    return {"wins": wins, "losses": losses, "ties": ties,
            "win_rate": wins / decided if decided else 0.5,  # ties left out, as in a sign test
            "win_rate_ties_half": (wins + 0.5 * ties) / len(verdicts),
            "p_value": binomtest(wins, decided, 0.5).pvalue if decided else 1.0}


def main(argv=None) -> dict:
    from blackbox_zo import MeZO, derive_seed
    from blackbox_zo.lm import TransformersLM, UntunedLM, load_model
    from blackbox_zo.running.trainer import batch_for_step
    from objectives import (
        CallableJudge,
        FluencyGuard,
        Generation,
        PairwiseObjective,
        reference_nll,
        repeated_trigrams,
        text_metrics,
    )

    args = parse_args(argv)
    overrides = spec_overrides(args.spec)
    model, tok = load_model()
    lm = TransformersLM(model, tok, batch_size=16)
    held = HELD[args.prompts]
    greedy = Generation(max_new_tokens=args.max_new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    base = greedy.run(lm, held)
    score_s = time.perf_counter() - t0
    judge = CallableJudge(JUDGES[args.judge])
    model, space, tuned_desc = tuned_space(model, tok, args)  # steering vectors start at zero: the model is unchanged

    second_copy = functools.cache(lambda: load_model()[0])  # weights that tuning never moves, loaded once if needed

    def untuned(**kw):
        """The model before tuning: the steered model read with its vectors off (no copy), else a second copy."""
        if args.steer:
            return UntunedLM(TransformersLM(model, tok, batch_size=16, **kw), space)
        return TransformersLM(second_copy(), tok, batch_size=16, **kw)

    if args.fluency_slack is not None:
        # after the bare prompt (no chat template's system turn) the guard reads 3x fewer tokens a step
        judge = FluencyGuard.calibrated(judge, untuned(use_chat_template=args.guard_reads == "chat"), prompt_sets.TRAIN,
                                        slack=args.fluency_slack, answers=greedy.run(lm, prompt_sets.TRAIN),
                                        repeat_slack=args.repeat_slack)
    pref = PairwiseObjective(judge, generation=Generation(max_new_tokens=args.max_new_tokens,
                                                          temperature=args.temperature))
    train = [{"prompt": p} for p in prompt_sets.TRAIN]
    common.reset_peak()
    opt = MeZO(space, maximize=True, estimator="pairwise", compare=judge, seed=args.seed, **overrides)
    prefs, radii = [], []
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < args.budget and (args.steps is None or opt.step_count < args.steps):
        t = opt.step_count
        batch = batch_for_step(train, args.batch, args.seed, t)
        seed = derive_seed(args.seed, "sample", t)  # one sampling seed for both sides of the pair
        prefs.append(opt.step(lambda: pref.generate(lm, batch, seed)))
        radii.append(opt.last.eps)
        print(f"step {t}: preference {prefs[-1]:+.3f} eps {radii[-1]:.3g} ({time.perf_counter() - t_start:.0f} s)",
              file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t_start
    peak = common.peak_bytes()
    tuned = greedy.run(lm, held)
    result = judged(JUDGES[args.judge], tuned, base)
    if "+" in args.prompts:  # each set's own row too (the sets are consecutive in `held`)
        sizes = {name: len(HELD[name]) for name in args.prompts.split("+")}
        starts = dict(zip(sizes, [0, *itertools.accumulate(sizes.values())]))
        result["by_set"] = {name: judged(JUDGES[args.judge], tuned[starts[name]:starts[name] + k],
                                         base[starts[name]:starts[name] + k]) for name, k in sizes.items()}
    reference = untuned()  # fluency of the held answers, read as generate() wrote them (loaded after the peak)
    nll = {"base": reference_nll(reference, held, base), "tuned": reference_nll(reference, held, tuned)}
    text = {"text_before": text_metrics(base, nll=nll["base"]), "text_after": text_metrics(tuned, nll=nll["tuned"])}
    # the untuned model against itself ties every answer: win-rate 0.5 is where the gain starts
    text["honest_gain"] = honest_gain(0.5, result["win_rate"], text["text_before"], text["text_after"])
    payload = {"benchmark": "preference_vs_base", "git": common.git_commit(), "machine": common.machine_info(),
               "settings": {k: v for k, v in vars(args).items()}, "spec": opt.spec.to_dict(), "tuned": tuned_desc,
               "steps": opt.step_count, "train_s": round(train_s, 1), "score_s": round(score_s, 1),
               "training_peak_bytes": peak, "held_prompts": len(held), **result,
               "mean_word_length": {"base": mean_len(base), "tuned": mean_len(tuned)},
               "mean_distinct_words": {"base": mean_distinct(base), "tuned": mean_distinct(tuned)},
               "few_distinct_words": {"base": few_words(base), "tuned": few_words(tuned)},  # answers the guard fails
               "fluency_bound": getattr(judge, "max_nll", None), "repeat_bound": getattr(judge, "max_repeat", None),
               "mean_reference_nll": {k: mean(v) for k, v in nll.items()},  # nats/token, frozen model
               **text,  # issue 34's columns: text metrics before / after and the honest gain (honest_gain.py)
               "repeated_trigrams": {"base": mean([repeated_trigrams(t) for t in base]),
                                     "tuned": mean([repeated_trigrams(t) for t in tuned])},
               "train_preferences": prefs, "radii": radii,
               "samples": [{"prompt": p, "base": b, "tuned": t} for p, b, t in zip(held, base, tuned)]}
    common.write_results("preference_vs_base", payload, args.out)
    print(f"{opt.step_count} steps, {train_s:.0f} s: win-rate {result['win_rate']:.3f} (W/L/T {result['wins']}/"
          f"{result['losses']}/{result['ties']}, p = {result['p_value']:.2g}); mean word length "
          f"{payload['mean_word_length']['base']:.2f} -> {payload['mean_word_length']['tuned']:.2f}; reference NLL "
          f"{payload['mean_reference_nll']['base']:.2f} -> {payload['mean_reference_nll']['tuned']:.2f}; honest gain "
          f"{text['honest_gain']['shown']}; {args.out}")
    return payload


def few_words(texts: list[str]) -> int:
    return sum(rules.distinct_words(t) < rules.MIN_DISTINCT_WORDS for t in texts)


def mean_distinct(texts: list[str]) -> float:
    return sum(rules.distinct_words(t) for t in texts) / len(texts)


def mean_len(texts: list[str]) -> float:
    return sum(min(rules.mean_word_length(t), 20.0) for t in texts) / len(texts)  # no-word answers count as 20


if __name__ == "__main__":
    main()
