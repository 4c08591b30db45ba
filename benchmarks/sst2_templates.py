"""SST-2 prompt choice on the development split: zero-shot accuracy of templates x label words, no tuning.

Scores every candidate on the 200 train-dev sentences of quality_sst2.py (train.tsv outside every seed's k-shot
sample; validation.tsv is never read), uncalibrated, content-free and batch calibrated, so a prompt is chosen
without the test sentences. `--demos N` also puts N of seed 0's k-shot examples per class before each sentence.

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
    rows, t_start = [], time.perf_counter()
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
            rows.append({"template": template, "label_words": list(words), "demos_per_class": args.demos, **acc})
            print(f"{acc['none']:.3f} {acc['content_free']:.3f} {acc['batch']:.3f}  {words}  {template!r}", flush=True)
    payload = {"benchmark": "sst2_templates", "git": common.git_commit(), "machine": common.machine_info(),
               "command": " ".join(sys.argv), "settings": vars(args), "eval_set": "train-dev (200 train.tsv sentences)",
               "elapsed_s": round(time.perf_counter() - t_start, 1), "rows": rows}
    common.write_results("dev_sst2_templates", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
