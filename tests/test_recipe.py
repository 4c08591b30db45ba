"""One recipe for rewards on generated text, defined once (benchmarks/frontier_recipes.CHOSEN, what the frontier
search chose on dev), shipped as examples/vader_steer.yaml, and quoted as written by the README and docs/choosing.md.
"""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontier_recipes import CHOSEN, RECIPES  # noqa: E402


def flow(section: dict) -> str:
    """A config section as the docs write it: YAML flow style on one line."""
    return yaml.safe_dump(section, default_flow_style=True, width=1000).strip()


def test_the_shipped_example_is_the_chosen_recipe():
    sections, _ = RECIPES[CHOSEN]
    example = yaml.safe_load((ROOT / "examples" / "vader_steer.yaml").read_text())
    assert {k: example[k] for k in sections} == sections


def test_the_readme_and_choosing_page_quote_the_recipe_as_written():
    sections, _ = RECIPES[CHOSEN]
    quoted = [f"{key}: {flow(value)}" for key, value in sections.items()]
    for page in (ROOT / "README.md", ROOT / "docs" / "choosing.md"):
        text = page.read_text()
        missing = [q for q in quoted if q not in text]
        assert not missing, f"{page.name} does not quote the recipe's {missing}"
