"""Answer synthesis: deterministic text, JSON, tool calls and reasoning from the prompt.

Everything here is a pure function of the request, the directives and a seed, so the same
request always gets the same answer (except where a directive says otherwise). Text
answers have an exact token length (:func:`answer_text`), counted with :mod:`llm.tokens`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

from llm.emulator.engine_schema import instance_for, violating_instance
from llm.emulator.protocol import EmuRequest, EmuTool, EmuToolCall
from llm.tokens import count_text_tokens, count_tool_call_tokens

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FILLER = (
    "the", "model", "notes", "that", "this", "is", "a", "short", "and", "clear", "reply",
    "with", "some", "more", "words", "to", "make", "it", "read", "well", "for", "you",
    "each", "part", "fits", "into", "one", "plan", "so", "we", "keep", "on",
)  # fmt: skip
EFFORT_TOKENS = {"minimal": 64, "low": 512, "medium": 2048, "high": 8192, "xhigh": 16384}
EFFORT_TOKENS["max"] = 32768
_EDGE_PUNCT = ".,;:!?\"'()[]{}<>"
DEFAULT_MIN_TOKENS = 20
DEFAULT_MAX_TOKENS = 80


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def neutral_id(*parts: object, length: int = 24) -> str:
    """A deterministic base62 id; wire modules add their prefix (``toolu_``, ``call_``)."""
    value = stable_hash(*parts) * (2**64) + stable_hash("id", *parts)
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def _pieces(topic_text: str, rng: random.Random) -> list[tuple[str, int]]:
    words = (w.strip(_EDGE_PUNCT) for w in topic_text.split())
    topic = [w for w in words if any(ch.isalnum() for ch in w)][:6] or ["it"]
    words = ["Emulated", "answer", "about", *topic, "."]
    words += [rng.choice(_FILLER) for _ in range(400)]
    return [(w, count_text_tokens(w)) for w in words]


def answer_text(topic_text: str, target_tokens: int, rng: random.Random) -> str:
    """Text of exactly ``target_tokens`` tokens that opens with words from the prompt."""
    if target_tokens <= 0:
        return ""
    chosen: list[str] = []
    used = 0
    budget = target_tokens - 1  # the closing period
    for word, tokens in _pieces(topic_text, rng):
        if used + tokens > budget:
            break
        chosen.append(word)
        used += tokens
    while used < budget:
        chosen.append(rng.choice(_FILLER))
        used += 1
    return " ".join(chosen).replace(" .", ".") + "."


def text_chunks(text: str, words_per_chunk: int = 3) -> tuple[str, ...]:
    """Split ``text`` into small pieces whose concatenation is ``text``."""
    if not text:
        return ()
    words = text.split(" ")
    chunks = []
    for start in range(0, len(words), words_per_chunk):
        piece = " ".join(words[start : start + words_per_chunk])
        chunks.append(piece if start == 0 else " " + piece)
    return tuple(chunks)


def json_answer(schema: dict, rng: random.Random, *, violate: bool) -> str:
    """A JSON document for ``schema`` (one that fails validation when ``violate``)."""
    value = violating_instance(schema, rng) if violate else instance_for(schema, rng)
    return json.dumps(value, ensure_ascii=False)


def choose_tool(req: EmuRequest, topic_text: str) -> EmuTool | None:
    """The tool to call, or None to answer in text."""
    if not req.tools or req.tool_choice == "none" or req.after_tool_result:
        return None
    named = next((t for t in req.tools if t.name and t.name in topic_text), None)
    if req.tool_choice == "auto":
        return named
    if req.tool_choice == "any":
        return named or req.tools[0]
    return next((t for t in req.tools if t.name == req.tool_choice), None)


def tool_call(tool: EmuTool, call_id: str, rng: random.Random) -> EmuToolCall:
    """A call of ``tool`` whose arguments validate against its parameters schema."""
    params = tool.parameters or {"type": "object", "properties": {}}
    arguments = instance_for(params, rng)
    if not isinstance(arguments, dict):
        arguments = {}
    return EmuToolCall(id=call_id, name=tool.name, arguments=arguments)


def tool_call_tokens(call: EmuToolCall) -> int:
    return count_tool_call_tokens(call.name, call.arguments)


@dataclass(frozen=True)
class Reasoning:
    tokens: int
    text: str | None


def reasoning_tokens(
    effort: str | None, budget: int | None, always_on: bool, rng: random.Random
) -> int:
    """Reasoning tokens for an effort word (±25%) or a budget (60–90% of it)."""
    if budget is not None:
        return int(budget * rng.uniform(0.6, 0.9)) if budget > 0 else 0
    if effort is None and always_on:
        effort = "medium"
    if effort is None or effort == "none":
        return 0
    base = EFFORT_TOKENS.get(effort, EFFORT_TOKENS["medium"])
    return max(1, int(base * rng.uniform(0.75, 1.25)))


def thinking_summary(topic_text: str) -> str:
    """A short deterministic thought summary."""
    topic = " ".join(topic_text.split()[:8]) or "the request"
    return (
        f"The user asks about {topic}. I will recall the relevant facts, "
        "check them against the question and answer briefly."
    )
