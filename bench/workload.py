"""Deterministic synthetic workloads: prompts of known token counts, the same for every run.

Words are at most four letters, so each is exactly one token for :mod:`llm.tokens` (the
counter the emulator bills with) and a prompt's input tokens are known without a call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llm.tokens import MESSAGE_OVERHEAD, REQUEST_OVERHEAD, count_text_tokens

WORDS = (
    "data rate plan cost time load node task user item list note test file code line text "
    "word page form unit part step goal plot case fact rule idea team role view mode path"
).split()


@dataclass(frozen=True)
class Call:
    """One chat request of a workload: a single user message."""

    prompt: str
    max_tokens: int

    @property
    def input_tokens(self) -> int:
        """Input tokens the emulator bills for this request (one user message)."""
        return REQUEST_OVERHEAD + MESSAGE_OVERHEAD + count_text_tokens(self.prompt)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]


def words(rng: random.Random, count: int) -> str:
    """``count`` one-token words."""
    return " ".join(rng.choice(WORDS) for _ in range(count))


def rate_workload(
    n: int, *, min_words: int = 150, max_words: int = 450, max_tokens: int = 64, seed: int = 7
) -> list[Call]:
    """``n`` requests whose prompts are ``min_words``..``max_words`` tokens long."""
    rng = random.Random(seed)
    return [
        Call(f"Item {i}: " + words(rng, rng.randint(min_words, max_words)), max_tokens)
        for i in range(n)
    ]


def system_prompt(tokens: int, seed: int = 11) -> str:
    """A long shared system prompt of about ``tokens`` tokens."""
    return "You review records. " + words(random.Random(seed), tokens)


def mean_input_tokens(calls: list[Call]) -> float:
    return sum(call.input_tokens for call in calls) / max(1, len(calls))
