"""A local transformers sequence-classification checkpoint as a reward: score(prompt + completion) -> float.

It runs on its own device and dtype (not the tuned model's), in batches, and counts inputs it had to truncate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Score, check_values, mean_score
from .generation import CompletionObjective, Generation

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


class RewardModel(CompletionObjective):
    """Reward = the checkpoint's scalar logit (num_labels=1), or log-softmax of `label` when num_labels>1.

    Text scored: the tokenizer's chat template over [user: prompt, assistant: completion] when it has one
    (use_chat_template=None means "if available"), else prompt + completion. Inputs longer than
    max_length tokens lose their end (the tokenizer's truncation side); Score.info["truncated"] counts them.
    """

    def __init__(self, path: str, *, device: str = "cpu", dtype: Any = None, batch_size: int = 8,
                 max_length: int = 512, label: int | None = None, use_chat_template: bool | None = None,
                 template: Any = None, generation: Generation | None = None, name: str = "reward_model",
                 kl: float = 0.0, reference: LM | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path, self.device, self.batch_size, self.max_length = path, device, batch_size, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype or torch.float32).to(device).eval()
        if self.tokenizer.pad_token is None:  # GPT-2/Llama style checkpoints ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        n_labels = self.model.config.num_labels
        if n_labels > 1 and label is None:
            raise ValueError(f"{path} has {n_labels} labels: pass label= (the class whose log-prob is the reward)")
        self.label = label
        has_template = getattr(self.tokenizer, "chat_template", None) is not None
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        self.template, self.generation, self.name = template, generation or Generation(), name
        self.truncated = 0  # inputs truncated by the last call of score_texts
        self.use_reference(reference, kl)  # reward - kl x KL-hat against pi_0 = reference (objectives.kl)

    def texts(self, prompts: list[str], completions: list[str]) -> list[str]:
        if not self.use_chat_template:
            return [p + c for p, c in zip(prompts, completions)]
        return [self.tokenizer.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False)
            for p, c in zip(prompts, completions)]

    def score_texts(self, prompts: list[str], completions: list[str]) -> list[float]:
        """Rewards for (prompt, completion) pairs, batch by batch; sets `self.truncated`."""
        import torch

        texts, scores, truncated = self.texts(prompts, completions), [], 0
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            special = not self.use_chat_template  # a chat template already wrote BOS etc.
            lengths = [len(ids) for ids in self.tokenizer(chunk, add_special_tokens=special)["input_ids"]]
            truncated += sum(n > self.max_length for n in lengths)
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 add_special_tokens=special, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            if self.label is None:
                scores += logits[:, 0].tolist()
            else:  # log p(label | text)
                scores += torch.log_softmax(logits, dim=-1)[:, self.label].tolist()
        self.truncated = truncated
        return check_values(self.name, scores, len(texts), what="reward model scores")

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        """TRL reward-function signature, so a RewardModel can also sit inside Reward/WeightedSum/judges."""
        return self.score_texts(prompts, completions)

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        per = self.score_texts(self.prompts(batch), outputs)
        return mean_score(self.name, per, {"truncated": self.truncated, "n": len(per)})
