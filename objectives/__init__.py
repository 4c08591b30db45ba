"""Scorers that turn a user's objective (metric, reward, reward model, preference) into a number for the engine.

`blackbox_zo/` never imports this package: it only calls what these objects return (floats, or -1/0/+1 verdicts).
"""

from .base import Objective, ObjectiveError, Score, check_texts, check_values, mean_score, prompts_for
from .best_of_n import BestOfN
from .classification import GeneratedLabelClassifier, LabelWordClassifier, MultipleChoice, Verbalizer
from .data import kshot, load_examples, train_val_split
from .fluency import FluencyGuard, reference_nll
from .generation import CompletionObjective, Generation
from .judges import CallableJudge, InputJudge, Judge, PairwiseObjective, PreferenceRound, RewardJudge, preference
from .likelihood import NegativeLogLikelihood
from .margin import LabelWordMargin
from .metrics import accuracy, f1
from .qa import SquadObjective, exact_match, normalize_answer, token_f1
from .rewards import EvaluateMetric, Reward, VaderPositivity, WeightedSum, vader_reward
from .tasks import TEMPLATES, Task, get_task
from .text_metrics import distinct_n, repeated_token_trigrams, repeated_trigrams, text_metrics

__all__ = [
    "Objective", "ObjectiveError", "Score", "check_texts", "check_values", "mean_score", "prompts_for",
    "BestOfN", "GeneratedLabelClassifier", "LabelWordClassifier", "MultipleChoice", "Verbalizer",
    "kshot", "load_examples", "train_val_split", "CompletionObjective", "Generation",
    "CallableJudge", "InputJudge", "Judge", "PairwiseObjective", "PreferenceRound", "RewardJudge", "preference",
    "FluencyGuard", "reference_nll", "repeated_trigrams", "repeated_token_trigrams", "distinct_n", "text_metrics",
    "NegativeLogLikelihood", "LabelWordMargin", "accuracy", "f1", "SquadObjective", "exact_match", "normalize_answer", "token_f1",
    "EvaluateMetric", "Reward", "VaderPositivity", "WeightedSum", "vader_reward", "TEMPLATES", "Task", "get_task",
]


def __getattr__(name: str):
    # RewardModel imports torch/transformers: loaded only when asked for.
    if name == "RewardModel":
        from .reward_model import RewardModel
        return RewardModel
    raise AttributeError(name)
