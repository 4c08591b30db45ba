"""Factories that a run config names (`objective.factory: "objectives.recipes:NAME"`): data + objectives.

Each returns {"train": [...], "val": [...], "objective": ..., "val_objective": ...} from plain arguments,
so configs stay data and the engine never imports this package.
"""

from __future__ import annotations

from .builtin import sentiment_examples
from .data import kshot, load_splits, template_columns
from .tasks import get_task


def builtin_sentiment(metric: str = "accuracy", calibrate: str | None = None, seed: int = 0) -> dict:
    """The demo task: generated reviews, MeZO's SST-2 prompt "<sentence> It was [great|terrible]"."""
    objective = get_task("sst2").objective(metric=metric, calibrate=calibrate)
    return {"train": sentiment_examples("train", seed), "val": sentiment_examples("validation", seed),
            "objective": objective}


def hold_back(examples: list[dict], per_class: int, label_key: str = "label") -> tuple[list[dict], list[dict]]:
    """(rest, held back): the last `per_class` examples of each class (in the given order) are held back."""
    counts: dict[str, int] = {}
    for ex in examples:
        counts[str(ex[label_key])] = counts.get(str(ex[label_key]), 0) + 1
    small = {c: n for c, n in counts.items() if n <= per_class}
    if small:
        label, n = next(iter(small.items()))
        raise ValueError(f"holdout={per_class} leaves no training example of class {label!r} ({n} in all)")
    seen: dict[str, int] = {}
    rest, held = [], []
    for ex in examples:
        c = str(ex[label_key])
        seen[c] = seen.get(c, 0) + 1
        (held if seen[c] > counts[c] - per_class else rest).append(ex)
    return rest, held


def classification(task: str = "sst2", *, data: str, k: int = 16, val_size: int = 500,
                   metric: str = "accuracy", calibrate: str | None = None, seed: int = 0,
                   train_objective: str | None = None, margin_cap: float | None = None, holdout: int = 0) -> dict:
    """A MeZO-style k-shot task from `data`'s train and validation splits (`data` is required): a folder of
    train/validation .tsv, .csv, .jsonl or .json files, a folder saved by datasets, or a datasets name (data.load_splits).

    train_objective "nll" trains on the cross-entropy of the label word (MeZO's differentiable baseline),
    "tiebreak" on accuracy with plateaus decided by the right word's probability (LabelWordClassifier
    tiebreak=True), "margin" on the mean label-word margin (objectives.margin, capped at `margin_cap`);
    validation always reports plain `metric`. holdout=h keeps h of the k examples per class out of training and
    validates on them (best step, train.patience) instead of on validation.tsv, which is returned as "test": no
    labelled data beyond the 2k examples chooses anything, at the price of training on k - h per class.
    calibrate="reference" calibrates with the 2k training inputs (LabelWordClassifier); a task with an "ensemble"
    averages the calibrated scores of its prompts ("nll" trains on the first prompt only).
    """
    if train_objective not in (None, "nll", "tiebreak", "margin"):
        raise ValueError(f"train_objective must be None, 'nll', 'tiebreak' or 'margin', got {train_objective!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (training examples per label) must be an integer >= 1, got {k!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout < k:
        raise ValueError(f"holdout must be an integer from 0 to k - 1 = {k - 1}, got {holdout!r}")
    t = get_task(task)
    rows = load_splits(data, columns=[*template_columns(t.template), "label"])  # folder, saved dataset or datasets name
    train = kshot(rows["train"], k, seed, asked=f"objective.args.k={k}")
    per_class = val_size // max(1, len(t.label_words))
    asked = f"the {per_class} per class that objective.args.val_size={val_size} asks for"
    val = kshot(rows["validation"], per_class, seed, asked=asked) if val_size else rows["validation"]
    # calibrate="reference": each class's mean score over the 2k training inputs (their labels are not read)
    calibration = {"calibrate": calibrate, "reference": train if calibrate == "reference" else None}
    val_objective = t.objective(metric=metric, **calibration)
    objective = val_objective
    if train_objective == "tiebreak":
        objective = t.objective(metric=metric, tiebreak=True, **calibration)
    if train_objective == "nll":
        from .likelihood import NegativeLogLikelihood

        words = t.label_words
        objective = NegativeLogLikelihood(lambda ex: t.prompt(ex), target=lambda ex: " " + words[str(ex["label"])])
    if train_objective == "margin":
        from .margin import LabelWordMargin

        objective = LabelWordMargin(t.template, t.verbalizer(), cap=margin_cap, **t.classifier_options(), **calibration)
    if holdout:
        train, held = hold_back(train, holdout, t.label_key)
        return {"train": train, "val": held, "test": val, "objective": objective, "val_objective": val_objective}
    return {"train": train, "val": val, "objective": objective, "val_objective": val_objective}


OPEN_PROMPTS = [
    "Write one sentence about your day:", "Describe your morning in one sentence:",
    "Say something about the weather today:", "Tell me about your weekend in one sentence:",
    "Write one sentence about your neighbour:", "Describe your commute in one sentence:",
    "Write one sentence about your last meal:", "Say something about Mondays:",
    "Write one sentence about your job:", "Describe your evening in one sentence:",
    "Say something about the city you live in:", "Write one sentence about your week:",
]


def vader_prompts(max_new_tokens: int = 16, temperature: float = 0.0, held_out: int = 4) -> dict:
    """Reward tuning from generated text: VADER positivity of completions to open prompts.

    Greedy by default: with sampling, one flipped token changes the rest of a completion, so f(theta+eps z)
    - f(theta-eps z) is mostly sampling noise; greedily, small radii tie and the radius grows until the
    direction itself changes answers (measured in benchmarks/history/QUALITY.md). A temperature > 0 is seeded per
    step, so both sides of a pair share the sampling randomness. The last `held_out` prompts are validation only.
    """
    from .generation import Generation
    from .rewards import vader_reward

    rows = [{"prompt": p} for p in OPEN_PROMPTS]
    reward = vader_reward(template="{prompt}", generation=Generation(max_new_tokens=max_new_tokens, temperature=temperature))
    return {"train": rows[:-held_out], "val": rows[-held_out:], "objective": reward}
