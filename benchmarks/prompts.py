"""Prompts written for the reward and preference benchmarks, in three disjoint splits: train, dev, test.

Settings are chosen on TRAIN (tuning) + DEV (held-back scoring) only; TEST (64 prompts, topics no other
split uses) is for the reported benchmark tables, so the tables do not score the prompts we chose on.
TEST2 (128 prompts, 32 more unused topics) was written in session 12, before any run scored it: at a true
win-rate of 0.65, 64 prompts reach p < 0.01 in about one run of three; 192 (TEST + TEST2) in most.
"""

from __future__ import annotations

TEMPLATES = ("Describe {}.", "Write one sentence about {}.", "Tell me about {}.", "What do you think of {}?")

TRAIN_TOPICS = ("your morning", "the weather today", "Mondays", "the city", "a train journey", "your job",
                "the news", "the meeting")
DEV_TOPICS = ("your neighbour", "school", "traffic", "the last film you saw", "a restaurant", "winter",
              "the project", "an old house")
TEST_TOPICS = ("your weekend", "the hospital", "taxes", "the flight", "your office", "homework",
               "the queue at the bank", "the dentist", "a rainy afternoon", "the supermarket", "your phone",
               "the library", "a long walk", "the kitchen", "the football match", "the holidays")


def prompts(topics) -> list[str]:
    """Every template applied to every topic, topic-major (so a prefix of the list covers few topics)."""
    return [t.format(topic) for topic in topics for t in TEMPLATES]


TRAIN = prompts(TRAIN_TOPICS)  # 32
DEV = prompts(DEV_TOPICS)  # 32
TEST2_TOPICS = ("the garden", "your cousin", "the museum", "a birthday party", "the gym", "the post office",
                "your first car", "the beach", "a thunderstorm", "the bakery", "your childhood", "the airport",
                "the concert", "a job interview", "the park", "your favourite book", "the wedding", "the bus stop",
                "a snowy morning", "the hotel", "your laptop", "the market", "the river", "a power cut",
                "the barber", "your breakfast", "the zoo", "the camping trip", "the farm", "your best friend",
                "the new year", "a lost key")
TEST = prompts(TEST_TOPICS)  # 64
TEST2 = prompts(TEST2_TOPICS)  # 128
# --prompts: what a run scores on (dev+test+test2: the 3x-longer check reads dev and test in one run)
HELD = {"test": TEST, "dev": DEV, "test2": TEST2, "test+test2": TEST + TEST2, "dev+test+test2": DEV + TEST + TEST2}
