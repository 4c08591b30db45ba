"""The README's Python snippets run as written, and its config reference matches the code.

The snippets run in order in one namespace (each continues from the ones above), on a tiny model saved to
disk and with every loop and step count shortened to 2; a snippet that drifts from the API fails here.
"""

from __future__ import annotations

import re
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import pytest
import yaml

from blackbox_zo.setup.config import RunConfig, load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def shortened(code: str, model_dir: Path) -> str:
    """The snippet on the tiny model, with loops and step counts cut to 2."""
    code = re.sub(r"load_model\((\"[^\"]*\")?\)", f"load_model({str(model_dir)!r})", code)
    code = re.sub(r"range\(\d+\)", "range(2)", code)
    code = code.replace('"name": "embedded"', f'"name": {str(model_dir)!r}')  # run configs given as data
    return re.sub(r"\bsteps=\d+", "steps=2", code)


def test_python_snippets_run_as_written(tiny_llama_dir, tmp_path, monkeypatch):
    snippets = blocks("python")
    assert len(snippets) >= 4 and any("load_model()" in s for s in snippets)
    monkeypatch.chdir(tmp_path)  # snippets write run.jsonl and the like into the working folder
    namespace: dict = {"__name__": "readme"}
    for i, code in enumerate(snippets):
        try:
            exec(compile(shortened(code, tiny_llama_dir), f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README python block {i + 1} fails: {type(e).__name__}: {e}\n{code}") from e
    assert (tmp_path / "run.jsonl").exists() and namespace["opt"].step_count >= 2


def defaults(cls, prefix: str = "") -> dict[str, typing.Any]:
    """Every key of a config dataclass (nested sections dotted) and its default; MISSING when required."""
    hints = typing.get_type_hints(cls)
    out: dict[str, typing.Any] = {}
    for f in fields(cls):
        value = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        nested = hints[f.name] if is_dataclass(hints[f.name]) else type(value) if is_dataclass(value) else None
        if nested is not None:
            out.update(defaults(nested, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = list(value) if isinstance(value, tuple) else value
    return out


def reference_table() -> dict[str, str]:
    section = README.read_text().split("## Config reference", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([\w.]+)` \| (.*?) \|", section, flags=re.M))


def documented(cell: str) -> typing.Any:
    if cell == "(required)":
        return MISSING
    value = yaml.safe_load(cell.strip("`"))
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 5e-4 as a string; the config loader accepts it as a number
        except ValueError:
            return value
    return value


def test_config_reference_lists_every_key_with_its_default():
    code, table = defaults(RunConfig), reference_table()
    assert sorted(table) == sorted(code), f"missing: {sorted(set(code) - set(table))}, stale: {sorted(set(table) - set(code))}"
    for key, cell in table.items():
        expected = MISSING if key == "objective.factory" else code[key]  # "" there means "not given": required
        assert documented(cell) == expected, f"{key}: README says {cell}, the code's default is {expected!r}"


@pytest.mark.parametrize("text", [b for b in blocks("yaml") if "objective:" in b])
def test_yaml_examples_are_valid_configs(text):
    data = yaml.safe_load(text)
    data["objective"].setdefault("factory", "objectives.recipes:builtin_sentiment")
    assert load_config(data).objective.factory
