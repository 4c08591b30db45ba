"""VLLMBackend: the Backend contract over a `vllm.LLM` whose workers hold (and move) the tuned weights.

It is also the LM objectives call: generate / loglik / choice_logliks / label_word_logits, with the
same tokenisation and results as TransformersLM (scores from vLLM's prompt_logprobs).

Only seeds and scalars cross `collective_rpc`; the workers regenerate every direction from
`blackbox_zo.weights.noise` under canonical Hugging Face names, so a trajectory recorded with ParamSpace on a
transformers model replays here and vice versa. After every weight change the prefix cache is reset
(vLLM keeps cached KV blocks across weight changes: trap 2). On CPU the worker module keeps linear
weights live (trap 1) and construction asserts that every tuned element is really perturbed.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from blackbox_zo.lm.tokens import (
    chat_text,
    check_loglik_args,
    check_temperature,
    choice_logliks,
    context_ids,
    generation_ids,
    label_word_ids,
    reduce_logprobs,
    split_context_target,
    stop_strings,
    truncate_at_stop,
    uses_chat_template,
)
from blackbox_zo.vllm.worker import KEEP_REPACK_ENV
from blackbox_zo.weights.backend import InPlace
from blackbox_zo.weights.noise import KINDS, generator_id
from blackbox_zo.weights.params import merge_pairs

WORKER_EXTENSION = "blackbox_zo.vllm.worker.ZOWorkerExtension"


class CoverageError(RuntimeError):
    """Some tuned elements are not reachable by in-place updates (e.g. repacked CPU linear weights)."""


def canonical_shapes(model_dir: str | os.PathLike) -> dict[str, tuple]:
    """Names and shapes of `AutoModelForCausalLM.named_parameters()` (tied tensors once), on meta."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


class VLLMBackend(InPlace):
    """Backend contract + `generate` over vLLM. Build it under `if __name__ == "__main__":`."""

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        noise: str = "gaussian",
        dtype: str = "float32",
        live_cpu_weights: bool = True,
        enable_prefix_caching: bool = True,
        check_coverage: bool = True,
        use_chat_template: bool | None = None,
        max_length: int | None = None,
        master_weights: bool | None = None,
        seed: int = 0,
        **llm_kwargs,
    ):
        if noise not in KINDS:
            raise ValueError(f"noise must be one of {KINDS}, got {noise!r}")
        from vllm import LLM

        if model_dir is None or model_dir == "embedded":
            from blackbox_zo.lm.embedded import embedded_model_dir

            model_dir = embedded_model_dir()
        self.model_dir = Path(model_dir)
        self.noise_kind = noise
        self.canonical = canonical_shapes(self.model_dir)
        self._on_cpu = not torch.cuda.is_available()
        if self._on_cpu:
            # on CPU "gpu_memory_utilization" is the share of RAM reserved; a fixed KV size is leaner
            llm_kwargs.setdefault("kv_cache_memory_bytes", 1 << 30)
        else:
            llm_kwargs.setdefault("gpu_memory_utilization", 0.5)
        saved_env = os.environ.get(KEEP_REPACK_ENV)
        os.environ[KEEP_REPACK_ENV] = "0" if live_cpu_weights else "1"  # read in the worker at load
        try:
            self.llm = LLM(
                model=str(self.model_dir),
                dtype=dtype,
                seed=seed,
                enable_prefix_caching=enable_prefix_caching,
                worker_extension_cls=WORKER_EXTENSION,
                **llm_kwargs,
            )
        finally:
            if saved_env is None:
                os.environ.pop(KEEP_REPACK_ENV, None)
            else:
                os.environ[KEEP_REPACK_ENV] = saved_env
        self.prefix_caching = enable_prefix_caching
        self.tokenizer = self.llm.get_tokenizer()
        # vLLM refuses a prompt of max_model_len tokens (no room for the one token it samples when scoring)
        longest = self.llm.llm_engine.model_config.max_model_len - 1
        self.max_length = longest if max_length is None else max_length
        try:
            self.use_chat_template = uses_chat_template(self.tokenizer, use_chat_template)
            if not 1 <= self.max_length <= longest:
                raise ValueError(f"max_length must be in [1, max_model_len - 1 = {longest}], got {max_length}")
        except ValueError:
            self.close()
            raise
        # float32 masters by default for bf16/fp16 engines (as ParamSpace): no +eps/-eps drift
        self.load_report = self._rpc("zo_init", {k: list(v) for k, v in self.canonical.items()}, noise,
                                     master_weights)
        if check_coverage:
            try:
                self.check_coverage()
            except CoverageError:
                self.close()
                raise

    # --- plumbing ---------------------------------------------------------------------------------
    def _rpc(self, method: str, *args):
        return self.llm.collective_rpc(method, args=args)

    def _weights_changed(self) -> None:
        """Trap 2: cached KV blocks were computed with the old weights; drop them."""
        if self.prefix_caching and not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight change")

    def close(self) -> None:
        """Shut the engine down (frees its processes and memory)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:
                pass
            self.llm = None

    # --- Backend contract -------------------------------------------------------------------------
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.canonical.values())

    def generator_id(self) -> str:
        return generator_id("cuda" if not self._on_cpu else "cpu")

    def apply(self, pairs: Sequence[tuple[int, float]]) -> None:
        merged = merge_pairs(pairs)
        if not merged:
            return
        self._rpc("zo_apply", [(int(s), float(c)) for s, c in merged], self.noise_kind)
        self._weights_changed()

    def decay(self, factor: float) -> None:
        if factor == 1.0:
            return
        self._rpc("zo_decay", float(factor))
        self._weights_changed()

    def fingerprint(self) -> str:
        prints = self._rpc("zo_fingerprint")
        if prints and prints[0] is not None:
            return prints[0]
        from blackbox_zo.weights.params import fingerprint_tensors

        return fingerprint_tensors(self.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Canonical HF names and shapes (fused qkv / gate_up split back), float32 CPU tensors."""
        from safetensors.torch import load_file

        out = {n: torch.empty(s, dtype=torch.float32) for n, s in self.canonical.items()}
        filled = {n: 0 for n in self.canonical}
        tmp = tempfile.mkdtemp(prefix="zo-vllm-export-")
        try:
            for path, index in self._rpc("zo_export", tmp):
                part = load_file(path)
                for key, name, crow, nrows, ccol, ncols in index:
                    dst = out[name]
                    dst2 = dst.view(dst.shape[0], -1) if dst.ndim > 1 else dst.view(-1, 1)
                    dst2[crow : crow + nrows, ccol : ccol + ncols] = part[key].view(nrows, ncols)
                    filled[name] += nrows * ncols
                del part
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        missing = {n: (filled[n], out[n].numel()) for n in out if filled[n] != out[n].numel()}
        if missing:
            raise CoverageError(f"export does not cover every canonical element: {dict(list(missing.items())[:5])}")
        return out

    # --- checks and reports -----------------------------------------------------------------------
    def count_perturbed(self, seed: int = 12345, scale: float = 1.0) -> int:
        """Elements that change under a perturbation (weights restored bit-exactly afterwards).

        The probe uses Rademacher noise (z = +-1, never 0; gaussian float32 draws are exactly 0 about
        once in 10^7) with a scale far above any weight's ulp, so "unchanged" means "not reached".
        """
        reports = self._rpc("zo_count_perturbed", int(seed), float(scale), "rademacher")
        self._weights_changed()
        return sum(r["changed"] for r in reports)

    def check_coverage(self) -> int:
        """Raise CoverageError unless every canonical element is mapped, live and perturbed."""
        report = self.load_report[0]
        problems = [p for r in self.load_report for p in r["problems"]]
        covered: dict[str, int] = {}
        for r in self.load_report:
            for n, k in r["covered"].items():
                covered[n] = covered.get(n, 0) + k
        uncovered = {n: (covered.get(n, 0), math.prod(s)) for n, s in self.canonical.items()
                     if covered.get(n, 0) != math.prod(s)}
        perturbed = self.count_perturbed()
        total = self.numel()
        if perturbed != total or uncovered or problems or report["stale_gemm_layers"]:
            raise CoverageError(
                f"only {perturbed:,} of {total:,} tuned elements change under a perturbation. "
                f"Dead (repacked) vLLM params: {len(report['dead_params'])} e.g. {report['dead_params'][:3]}; "
                f"canonical tensors not fully mapped: {len(uncovered)} e.g. {list(uncovered.items())[:3]}; "
                f"layers with a stale packed gemm: {len(report['stale_gemm_layers'])} "
                f"e.g. {report['stale_gemm_layers'][:3]}; mapping problems: {problems[:3]}; "
                f"live-weight patch installed in worker: {report['patch_installed']}. "
                "On CPU, import blackbox_zo.vllm.worker before the model loads "
                f"(and do not set {KEEP_REPACK_ENV}=1)."
            )
        return perturbed

    def snapshot(self) -> None:
        """Workers keep a copy of the current weights (one model's worth of memory) for restore()."""
        self._rpc("zo_snapshot")

    def restore(self) -> None:
        """Put back the weights of the last snapshot() bit-exactly, and drop the copy."""
        self._rpc("zo_restore_snapshot")
        self._weights_changed()

    def restore_drift(self, seed: int, eps: float = 1e-3) -> dict:
        """Apply +eps*z then -eps*z and report how far theta moved (then put theta back exactly).

        theta is the float32 master copy when the engine runs in bf16/fp16 (live_changed then counts
        engine weights whose rounding moved), else the live weights themselves."""
        self._rpc("zo_snapshot", "drift")
        self._rpc("zo_apply", [(int(seed), float(eps))], self.noise_kind)
        self._rpc("zo_apply", [(int(seed), -float(eps))], self.noise_kind)
        reports = self._rpc("zo_diff_from_snapshot", "drift")
        live = self._rpc("zo_diff_from_snapshot", "drift", True)
        self._rpc("zo_restore_snapshot", "drift")
        self._weights_changed()
        n = sum(r["elements"] for r in reports) or 1
        return {
            "changed": sum(r["changed"] for r in reports),
            "live_changed": sum(r["changed"] for r in live),  # engine weights (differs with masters)
            "elements": n,
            "max_abs": max(r["max_abs"] for r in reports),
            "rms": math.sqrt(sum(r["sum_sq"] for r in reports) / n),
        }

    # --- scoring (the LM protocol, with TransformersLM's tokenisation) -----------------------------
    def _prompt_logprobs(self, rows: list[list[int]]) -> list[list[float]]:
        """log p(row[t] | row[:t]) for t >= 1 of each token row (prompt_logprobs; prefill only)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": r} for r in rows], params, use_tqdm=False)
        return [[lp[t].logprob for t, lp in zip(r[1:], o.prompt_logprobs[1:])] for r, o in zip(rows, outputs)]

    def loglik(self, prompts: Sequence[str], targets: Sequence[str], reduce: str = "sum") -> list[float]:
        """log p(target | prompt) per example, summed or averaged per target token; empty target: 0.0."""
        check_loglik_args(prompts, targets, reduce)
        pairs = [split_context_target(self.tokenizer, p, t, self.max_length) for p, t in zip(prompts, targets)]
        todo = [i for i, (_, t) in enumerate(pairs) if t]
        scores: list = [reduce_logprobs(torch.empty(0), reduce)] * len(pairs)  # an empty target: 0.0 or []
        for i, lps in zip(todo, self._prompt_logprobs([pairs[i][0] + pairs[i][1] for i in todo])):
            target_logprobs = lps[len(lps) - len(pairs[i][1]):]  # the row's last len(target) tokens
            scores[i] = reduce_logprobs(torch.tensor(target_logprobs, dtype=torch.float32), reduce)
        return scores

    def choice_logliks(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                       reduce: str = "mean") -> list[list[float]]:
        """Score each candidate continuation of each prompt (MeZO multiple choice: mean per token)."""
        return choice_logliks(self.loglik, prompts, choices, reduce)

    def label_word_ids(self, words: Sequence[str]) -> list[int]:
        """First token id of each label word (with a leading space), exactly as TransformersLM picks them."""
        return label_word_ids(self.tokenizer, words)

    def label_word_logits(self, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:
        """Next-token log-probabilities [n, len(words)] (float32) of each word's first token."""
        word_ids = self.label_word_ids(words)
        # context + the word fit in max_length (as in TransformersLM); the row's last prompt logprob is the word's
        encoded = [context_ids(self.tokenizer, p, self.max_length, reserve=1) for p in prompts]
        lps = self._prompt_logprobs([e + [w] for e in encoded for w in word_ids])
        return torch.tensor([lp[-1] for lp in lps], dtype=torch.float32).view(len(prompts), len(word_ids))

    # --- generation -------------------------------------------------------------------------------
    def prompt_text(self, prompt: str) -> str:
        """The text `generate` continues for `prompt` (as TransformersLM.prompt_text)."""
        return chat_text(self.tokenizer, prompt) if self.use_chat_template else prompt

    def _encode(self, prompt: str, max_new_tokens: int = 0) -> list[int]:
        """Same prompt ids as TransformersLM.generate (chat template when enabled, trimmed to fit)."""
        return generation_ids(self.tokenizer, prompt, self.use_chat_template, self.max_length, max_new_tokens)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Completions only, truncated before the first stop string; temperature 0 is greedy."""
        from vllm import SamplingParams

        check_temperature(temperature)
        stop = stop_strings(stop)
        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            seed=seed if temperature > 0 else None,
            stop=stop or None,
            skip_special_tokens=True,
        )
        requests = [{"prompt_token_ids": self._encode(p, max_new_tokens)} for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [truncate_at_stop(o.outputs[0].text, stop) for o in outputs]
