"""Templates as data, local loaders, per-class k-shot sampling and seeded splits."""

import json
from collections import Counter

import pytest

from objectives import (
    TEMPLATES,
    LabelWordClassifier,
    MultipleChoice,
    SquadObjective,
    get_task,
    kshot,
    load_examples,
    train_val_split,
)


def test_builtin_templates_are_json_data_and_mezo_sst2():
    assert json.loads(json.dumps(TEMPLATES)) == TEMPLATES
    t = get_task("sst2")
    assert t.prompt({"sentence": "A fine film."}) == "A fine film. It was"
    assert t.verbalizer().words == {"0": "terrible", "1": "great"}
    assert set(TEMPLATES) >= {"sst2", "sst5", "rte", "boolq", "cb", "squad"}
    assert len(get_task("sst5").label_words) == 5
    assert get_task("rte").prompt({"premise": "P.", "hypothesis": "H"}) == 'P.\nDoes this mean that "H" is true? Yes or No?\n'
    assert isinstance(t.objective(calibrate="batch"), LabelWordClassifier)
    assert isinstance(get_task("squad").objective(), SquadObjective)
    assert isinstance(get_task("copa").objective(), MultipleChoice)
    with pytest.raises(KeyError, match="unknown task"):
        get_task("nope")


def test_custom_task_from_dict_and_json(tmp_path):
    spec = {"template": "Review: {text}\nSentiment:", "label_words": {0: "negative", 1: "positive"}}
    t = get_task(spec)
    assert t.label_words == {"0": "negative", "1": "positive"}  # JSON-style string keys
    path = tmp_path / "mytask.json"
    path.write_text(json.dumps(spec))
    assert get_task(path).name == "mytask" and get_task(path).prompt({"text": "ok"}) == "Review: ok\nSentiment:"


def test_loaders(tmp_path):
    (tmp_path / "a.tsv").write_text('sentence\tlabel\nsays "hi" \t1\nbad\t0\n')
    assert load_examples(tmp_path / "a.tsv") == [{"sentence": 'says "hi"', "label": "1"}, {"sentence": "bad", "label": "0"}]
    (tmp_path / "a.csv").write_text('text,label\n"a, b",1\n')
    assert load_examples(tmp_path / "a.csv") == [{"text": "a, b", "label": "1"}]
    (tmp_path / "a.jsonl").write_text('{"q": "x", "answers": ["y"]}\n\n{"q": "z", "answers": []}\n')
    assert load_examples(tmp_path / "a.jsonl", limit=1) == [{"q": "x", "answers": ["y"]}]
    assert load_examples(iter([{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="unknown format"):
        (tmp_path / "a.txt").write_text("x")
        load_examples(tmp_path / "a.txt")


def test_bad_files_are_named_with_their_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b"\n{"prompt": "c"}\n')
    # the column counts within the line (the raw line's newline made json report "column 1" of a next line)
    with pytest.raises(ValueError, match=r"rows.jsonl, line 3: not valid JSON \(Expecting ',' delimiter at column 15\)"):
        load_examples(path)
    path.write_text('{"prompt": "a"}\n["not", "an", "object"]\n')
    with pytest.raises(ValueError, match=r"rows.jsonl, line 2: expected a JSON object, got list"):
        load_examples(path)
    (tmp_path / "rows.json").write_text('[{"a": 1},\n {"a": 2,]')
    with pytest.raises(ValueError, match=r"rows.json, line 2: not valid JSON"):
        load_examples(tmp_path / "rows.json")
    with pytest.raises(FileNotFoundError, match=r"missing.jsonl: no such data file"):
        load_examples(tmp_path / "missing.jsonl")


def test_load_from_datasets_dataset():
    datasets = pytest.importorskip("datasets", reason="`datasets` not installed")
    ds = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]})
    assert load_examples(ds) == [{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}]


def test_kshot_per_class_seeded():
    examples = [{"id": i, "label": str(i % 3)} for i in range(30)]
    picked = kshot(examples, 4, seed=1)
    assert Counter(ex["label"] for ex in picked) == {"0": 4, "1": 4, "2": 4}
    assert len({ex["id"] for ex in picked}) == 12  # without replacement
    assert picked == kshot(examples, 4, seed=1)
    assert [ex["id"] for ex in picked] != [ex["id"] for ex in kshot(examples, 4, seed=2)]
    with pytest.raises(ValueError, match="fewer than k=11"):
        kshot(examples, 11, seed=0)


def test_train_val_split():
    examples = [{"id": i} for i in range(10)]
    train, val = train_val_split(examples, 3, seed=0)
    assert len(train) == 7 and len(val) == 3
    assert sorted(ex["id"] for ex in train + val) == list(range(10))
    assert train_val_split(examples, 0.2, seed=0)[1] == train_val_split(examples, 0.2, seed=0)[1]
    assert len(train_val_split(examples, 0.2, seed=5)[1]) == 2
    with pytest.raises(ValueError):
        train_val_split(examples, 11, seed=0)


def test_sst2_kshot_from_real_data(sst2_data):
    train = load_examples(sst2_data / "train.tsv")
    assert set(train[0]) == {"sentence", "label"} and len(train) >= 32  # GLUE has 67k rows; the shipped fallback sample has 32
    picked = kshot(train, 16, seed=42)
    assert Counter(ex["label"] for ex in picked) == {"0": 16, "1": 16}
    prompt = get_task("sst2").prompt(picked[0])
    assert prompt.endswith(" It was") and "  It was" not in prompt  # trailing TSV space stripped


def test_builtin_topics_are_balanced_and_validation_phrases_are_unseen(tmp_path):
    from objectives import load_examples
    from objectives.builtin import OPENINGS, TOPICS, topic_examples, write_tsv

    train, val = topic_examples("train"), topic_examples("validation")
    assert [sum(r["label"] == c for r in train) for c in TOPICS] == [120] * 4
    assert [sum(r["label"] == c for r in val) for c in TOPICS] == [72] * 4
    seen = {r["sentence"].removeprefix(o).strip(" .") for r in train for o in OPENINGS if r["sentence"].startswith(o)}
    for r in val:  # every validation line ends in one of its class's held-out phrases, none seen in training
        rest = next(r["sentence"].removeprefix(o).strip(" .") for o in OPENINGS if r["sentence"].startswith(o))
        assert rest in TOPICS[r["label"]][1][10:] and rest not in seen
    write_tsv("topics", tmp_path)
    back = load_examples(tmp_path / "validation.tsv")
    assert [(r["sentence"], str(r["label"])) for r in back] == [(r["sentence"], str(r["label"])) for r in val]
    with pytest.raises(ValueError, match="unknown built-in task"):
        write_tsv("news", tmp_path)


def test_splits_from_folders_of_any_format_and_from_saved_datasets(tmp_path):
    from objectives.data import load_splits

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "train.csv").write_text("sentence,label\na,0\n")
    (tmp_path / "csv" / "validation.jsonl").write_text('{"sentence": "b", "label": 1}\n')
    assert load_splits(tmp_path / "csv", columns=["sentence", "label"]) == {
        "train": [{"sentence": "a", "label": "0"}], "validation": [{"sentence": "b", "label": 1}]}
    datasets = pytest.importorskip("datasets", reason="`datasets` not installed")
    saved = tmp_path / "saved"
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"sentence": [s], "label": [0]})
                          for s in ("train", "validation")}).save_to_disk(str(saved))
    assert load_splits(saved)["validation"] == [{"sentence": "validation", "label": 0}]
    with pytest.raises(ValueError, match=r"has no split 'test' \(it has train, validation\)"):
        load_splits(saved, splits=["test"])
    with pytest.raises(ValueError, match=r"split 'train'.*row 1 has no column 'text'"):
        load_splits(saved, columns=["text"])


def test_missing_files_and_columns_are_named(tmp_path):
    from objectives.data import load_splits

    with pytest.raises(FileNotFoundError, match=r"data .*nowhere does not exist: pass a folder with train.tsv"):
        load_splits(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"data plain_word does not exist"):  # not org/name: never the network
        load_splits("plain_word")
    (tmp_path / "train.tsv").write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(FileNotFoundError, match=r"validation.tsv not found \(nor .csv, .jsonl, .json\)"):
        load_splits(tmp_path, splits=["train", "validation"])
    with pytest.raises(ValueError, match=r"train.tsv: row 1 has no column 'sentence' \(it has text, label; the task "
                                         r"reads sentence, label\)"):
        load_splits(tmp_path, splits=["train"], columns=["sentence", "label"])
    with pytest.raises(ValueError, match="is a file"):
        load_splits(tmp_path / "train.tsv")


def test_kshot_names_the_setting_that_asked():
    rows = [{"label": str(i % 2)} for i in range(4)]
    with pytest.raises(ValueError, match=r"class '0' has 2 examples, fewer than the 4 per class that val_size=8 asks"):
        kshot(rows, 4, seed=0, asked="the 4 per class that val_size=8 asks for")


def test_importing_objectives_loads_neither_sklearn_nor_torch():
    """`import objectives` took ~4 s (sklearn): config errors in objective.args answer in well under a second."""
    import subprocess
    import sys

    code = "import sys, objectives; print(sorted(m for m in ('sklearn', 'torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
