"""benchmarks/RESULTS.md is what benchmarks/results_index.py generates, and every file it indexes exists.

CI runs this so a new results file or an edited figure cannot leave the index stale.
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def index_module():
    spec = importlib.util.spec_from_file_location("results_index", ROOT / "benchmarks" / "results_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_is_up_to_date():
    index = index_module()
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == index.render(), (
        "benchmarks/RESULTS.md is stale: run python benchmarks/results_index.py")


def test_every_headline_file_exists_and_names_its_command():
    index = index_module()
    for _, figure, files in index.HEADLINES:
        for name in files:
            assert (index.RESULTS / name).exists(), f"{figure}: results/{name} is missing"
            assert index.load(name)["command"] != index.UNKNOWN, f"results/{name} records no command"


def test_document_patterns_match_the_files_they_name():
    index = index_module()
    patterns = index.reference_patterns("see results/reward_vader_600s_zo_s$s.json and results/dev_sst2_300s_NAME.json "
                                        "and results/grpo_reward.{json,png} and results/preference_600s_guarded[_sS].json")
    named = ["reward_vader_600s_zo_s2.json", "dev_sst2_300s_trunk_top2_ce.json", "grpo_reward.png",
             "preference_600s_guarded_s1.json", "preference_600s_guarded.json"]
    assert all(any(p.match(n) for p in patterns) for n in named)
    assert not any(p.match("reward_vader_600s_grpo_s2.json") for p in patterns)
