"""SST-2 prompt choice on the development split: zero-shot accuracy of templates x label words, no tuning.

Scores every candidate on the 200 train-dev sentences of quality_sst2.py (train.tsv outside every seed's k-shot
sample; validation.tsv is never read), uncalibrated, content-free and batch calibrated, and calibrated with each
seed's 2k training inputs ("reference", mean over seeds), so a prompt is chosen without the test sentences. Then
ensembles of the K best candidates by that reading (K = 1..8) are scored the same way: their calibrated label-word
scores averaged (objectives: LabelWordClassifier(ensemble=...)). `--demos N` also puts N of seed 0's k-shot
examples per class before each sentence.

    python benchmarks/sst2_templates.py --data DATA --out benchmarks/results/dev_sst2_templates.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

TEMPLATES = [
    "{sentence} It was",  # MeZO's
    "{sentence} All in all, the movie was",
    "Review: {sentence}\nSentiment:",
    "Movie review: {sentence}\nThe review is",
    "{sentence}\nQuestion: Is this review positive or negative?\nAnswer:",
    "{sentence} In summary, the film is",
]
WORDS = [("terrible", "great"), ("bad", "good"), ("negative", "positive"), ("awful", "wonderful")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with train.tsv (validation.tsv is not read)")
    p.add_argument("--k", type=int, default=16, help="k-shot size whose samples the dev split avoids")
    p.add_argument("--seeds", type=int, default=3, help="seeds whose k-shot samples the dev split avoids")
    p.add_argument("--demos", type=int, default=0, help="in-context examples per class from seed 0's k-shot sample")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "dev_sst2_templates.json"))
    return p.parse_args(argv)


def demo_prefix(template: str, words: tuple[str, str], shots: list[dict], per_class: int) -> str:
    """`per_class` k-shot examples of each class, filled in with their label word, one per line."""
    from objectives import kshot

    picked = kshot(shots, per_class, 0)
    return "".join(template.format(sentence=ex["sentence"]) + " " + words[int(ex["label"])] + "\n" for ex in picked)


def reference_objective(template: str, words, reference: list[dict], ensemble=()):
    from objectives import LabelWordClassifier

    return LabelWordClassifier(template, {"0": words[0], "1": words[1]}, calibrate="reference", reference=reference,
                               ensemble=[(t, {"0": w[0], "1": w[1]}) for t, w in ensemble])


def score_ensembles(rows: list[dict], views: list, shots: list[list[dict]], dev: list[dict]) -> list[dict]:
    """The K best candidates by their reference reading, K = 1..8, their scores averaged: accuracy per seed."""
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["reference"])  # stable: ties keep the table's order
    out = []
    for k in range(1, 9):
        picked = [views[i] for i in order[:k]]
        (template, words, _), rest = picked[0], [(t, w) for t, w, _ in picked[1:]]
        by_seed = [reference_objective(template, words, shot, rest).score(
            dev, {"views": [per_seed[s] for _, _, per_seed in picked]}).value for s, shot in enumerate(shots)]
        out.append({"k": k, "prompts": [{"template": rows[i]["template"], "label_words": rows[i]["label_words"]}
                                        for i in order[:k]], "reference_by_seed": by_seed,
                    "reference": sum(by_seed) / len(by_seed)})
        print(f"ensemble of {k}: {out[-1]['reference']:.3f} {[round(a, 3) for a in by_seed]}", flush=True)
    return out


def main(argv=None) -> dict:
    from quality_sst2 import DEV_SIZE

    from blackbox_zo.lm import TransformersLM, load_model
    from objectives import get_task, kshot, load_examples

    args = parse_args(argv)
    train = load_examples(Path(args.data) / "train.tsv")
    used = {ex["sentence"] for s in range(args.seeds) for ex in kshot(train, args.k, s)}
    dev = kshot([ex for ex in train if ex["sentence"] not in used], DEV_SIZE // 2, 7)  # = quality_sst2 train-dev
    model, tok = load_model("embedded")
    lm = TransformersLM(model, tok, batch_size=32)
    shots = [kshot(train, args.k, s) for s in range(args.seeds)]
    rows, views, t_start = [], [], time.perf_counter()
    for template in TEMPLATES:
        for words in WORDS:
            full = template
            if args.demos:
                full = demo_prefix(template, words, kshot(train, args.k, 0), args.demos).replace("{", "{{").replace(
                    "}", "}}") + template
            task = get_task({"name": "sst2_dev", "template": full, "label_words": {"0": words[0], "1": words[1]}})
            objective = task.objective(calibrate="content_free")
            outputs = objective.outputs(lm, dev)
            acc = {c or "none": task.objective(calibrate=c).score(dev, outputs).value for c in (None, "content_free", "batch")}
            per_seed = [{**outputs, "reference": lm.label_word_logits([full.format_map(ex) for ex in shot],
                                                                      list(words)).tolist()} for shot in shots]
            acc["reference_by_seed"] = [reference_objective(task.template, words, shot).score(dev, out).value
                                        for shot, out in zip(shots, per_seed)]
            acc["reference"] = sum(acc["reference_by_seed"]) / len(shots)
            rows.append({"template": template, "label_words": list(words), "demos_per_class": args.demos, **acc})
            views.append((full, words, per_seed))
            print(f"{acc['none']:.3f} {acc['content_free']:.3f} {acc['batch']:.3f} {acc['reference']:.3f}  {words}  "
                  f"{template!r}", flush=True)
    ensembles = score_ensembles(rows, views, shots, dev)
    payload = {"benchmark": "sst2_templates", "git": common.git_commit(), "machine": common.machine_info(),
               "command": " ".join(sys.argv), "settings": vars(args), "eval_set": "train-dev (200 train.tsv sentences)",
               "elapsed_s": round(time.perf_counter() - t_start, 1), "rows": rows, "ensembles": ensembles}
    common.write_results("dev_sst2_templates", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
