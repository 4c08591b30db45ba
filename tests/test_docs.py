"""Every code block of the documentation site (docs/, and examples/README.md) works, and the generated pages are current.

Python blocks run in order, one namespace per page, on a tiny model with loops cut to 2 (a page that continues
another runs after it); blocks that need what a test cannot have (vLLM, a network) are compiled and their imports
resolved. YAML blocks that are run configs load with `load_config`; shell blocks' `blackbox-zo` commands parse with
the CLI's parser. `mkdocs build --strict` (CI) checks the links.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.test_readme_snippets import ROOT, check_cli_line, results_index, shortened

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
CONTINUES = {"choosing.md": "getting-started.md"}  # the page's snippets continue from another page's
COMPILE_ONLY = {"vllm.md": "needs vLLM", "README.md": "downloads GLUE (a network)"}
RUN_CONFIG_KEYS = {"objective", "model", "space", "optim", "train", "distributed", "output", "export"}


def fenced(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, indented ones (inside a list item) dedented."""
    found = re.findall(r"^( *)```(\w*)\n(.*?)^\1```", path.read_text(), flags=re.S | re.M)
    return [(lang, "".join(line[len(indent):] for line in code.splitlines(keepends=True))) for indent, lang, code in found]


def of(path: Path, language: str) -> list[str]:
    return [code for lang, code in fenced(path) if lang == language]


def imports_resolve(code: str) -> None:
    """Every module a block imports exists (the block itself is not run)."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                    f"{node.module} has no {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


def test_every_page_is_in_the_site_navigation():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = set(re.findall(r"[\w-]+\.md", json.dumps(nav)))
    assert listed == {p.name for p in PAGES}, f"not in mkdocs.yml's nav: {sorted({p.name for p in PAGES} - listed)}"


def test_every_block_has_a_language_this_test_checks():
    for page in [*PAGES, ROOT / "examples" / "README.md"]:
        for lang, _ in fenced(page):
            assert lang in ("python", "yaml", "bash", "text", "json"), f"{page.name}: a ```{lang or '(none)'} block"


@pytest.mark.parametrize("page", [p for p in PAGES if of(p, "python") and p.name not in COMPILE_ONLY],
                         ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": page.stem}
    for source in [DOCS / CONTINUES[page.name]] if page.name in CONTINUES else []:
        for i, code in enumerate(of(source, "python")):
            exec(compile(shortened(code, tiny_llama_dir), f"{source.name} python block {i + 1}", "exec"), namespace)
    for i, code in enumerate(of(page, "python")):
        try:
            exec(compile(shortened(code, tiny_llama_dir), f"{page.name} python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{page.name} python block {i + 1} fails: {type(e).__name__}: {e}\n{code}") from e


@pytest.mark.parametrize("page", [DOCS / "vllm.md", ROOT / "examples" / "README.md"], ids=lambda p: p.name)
def test_python_blocks_that_need_more_compile_and_import(page):
    assert of(page, "python") and page.name in COMPILE_ONLY
    for code in of(page, "python"):
        imports_resolve(code)


@pytest.mark.parametrize("code", [c for p in PAGES for c in of(p, "yaml")])
def test_yaml_blocks_are_valid_configs(code):
    from blackbox_zo.setup.config import load_config

    data = yaml.safe_load(code)
    assert isinstance(data, dict) and set(data) <= RUN_CONFIG_KEYS, f"not a run config: {sorted(data)}"
    data.setdefault("objective", {}).setdefault("factory", "objectives.recipes:builtin_sentiment")
    assert load_config(data).objective.factory


@pytest.mark.parametrize("line", [line for p in PAGES for b in of(p, "bash") for line in b.splitlines()
                                  if line.lstrip().startswith("blackbox-zo ")])
def test_shell_commands_parse_with_the_cli(line):
    import shlex

    check_cli_line(" ".join(shlex.split(line, comments=True)))


def generator(name: str):
    """One of the scripts in docs/ that write a page, as a module."""
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_generated_from_the_dataclasses():
    module = generator("config_reference")
    assert (DOCS / "config.md").read_text() == module.render(), (
        "docs/config.md is stale: run python docs/config_reference.py")


def test_results_page_is_generated_from_the_results_files():
    index = results_index()
    assert (DOCS / "results.md").read_text() == index.render_page(), (
        "docs/results.md is stale: run python benchmarks/results_index.py")
    assert index.main(["--check"]) == 0


def test_layout_page_is_generated_from_the_files():
    module = generator("layout_reference")
    assert (DOCS / "architecture.md").read_text() == module.render(), (
        "docs/architecture.md is stale: run python docs/layout_reference.py")
    assert "| `subspace.py` |" in module.render() and "| `cma.py` |" in module.render()


def test_the_cli_page_names_every_option_of_the_main_commands():
    """docs/cli.md follows the argument parser: each option of run, demo, eval, export and replay is on the page."""
    import argparse

    from blackbox_zo.running.cli import parser

    page = (DOCS / "cli.md").read_text()
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = sorted(f"{name} {option}" for name in ("run", "demo", "eval", "export", "replay")
                     for action in commands[name]._actions for option in action.option_strings
                     if option.startswith("--") and option != "--help" and f"{option}" not in page)
    assert not missing, f"docs/cli.md does not mention: {missing}"


def test_quickstarts_page_is_the_readmes_quickstarts_and_the_home_links_it():
    module = generator("quickstarts_page")
    assert (DOCS / "quickstarts.md").read_text() == module.render(), (
        "docs/quickstarts.md is stale: run python docs/quickstarts_page.py")
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (Quickstart \d.*)$", readme, flags=re.M)
    assert len(headings) == 4 and re.findall(r"^## (Quickstart \d.*)$", module.render(), flags=re.M) == headings
    for code in of(ROOT / "README.md", "python"):  # every README quickstart snippet is on the page, as written
        assert code in module.render() or "venv" in code
    home = (DOCS / "index.md").read_text()
    for heading in headings:  # the site's home links each one (mkdocs' anchor of the heading)
        anchor = re.sub(r"[^\w\s-]", "", heading.lower()).strip().replace(" ", "-")
        assert f"(quickstarts.md#{anchor})" in home, heading
