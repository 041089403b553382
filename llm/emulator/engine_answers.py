"""Answer synthesis: deterministic text, JSON, tool calls and reasoning from the prompt.

Tool calls and thinking follow what the real models do (checked against recorded real
answers): in auto mode a model calls every tool the prompt is about, several in parallel,
whether or not the prompt names them; a forced tool choice calls a tool even right after a
tool result; Gemini 2.5 Flash/Pro and 3.x think unasked; thoughts count against the output
limit before the answer does.

Everything here is a pure function of the request, the directives and a seed, so the same
request always gets the same answer (except where a directive says otherwise). Text
answers have an exact token length (:func:`answer_text`), counted with :mod:`llm.tokens`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass

from llm.emulator.engine_schema import instance_for, violating_instance
from llm.emulator.protocol import EmuRequest, EmuTool, EmuToolCall
from llm.models import ModelInfo
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


#: Words of a tool name too generic to tell what the tool is about.
_GENERIC_NAME_WORDS = frozenset(
    {"get", "set", "fetch", "find", "list", "lookup", "search", "tool", "call", "data",
     "info", "current", "make", "run", "function", "query", "check", "compute", "retrieve"}
)  # fmt: skip
_NAME_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def _topic_words(tool: EmuTool) -> set[str]:
    """The words (4+ letters, not generic) of a tool's name: ``get_current_time`` → time."""
    parts = (part.lower() for part in _NAME_SPLIT.split(tool.name))
    return {part for part in parts if len(part) >= 4 and part not in _GENERIC_NAME_WORDS}


def relevant_tools(req: EmuRequest, topic_text: str) -> tuple[EmuTool, ...]:
    """The tools the prompt is about: named in it, or sharing a topic word with it
    (``What's the weather in Oslo?`` is about ``get_weather``), in declaration order."""
    prompt = {word.lower() for word in re.findall(r"[A-Za-z0-9]+", topic_text)}
    chosen = []
    for tool in req.tools:
        words = _topic_words(tool)
        named = bool(tool.name) and tool.name in topic_text
        if named or any(p.startswith(w) for w in words for p in prompt):
            chosen.append(tool)
    return tuple(chosen)


def choose_tools(req: EmuRequest, topic_text: str) -> tuple[EmuTool, ...]:
    """The tools to call (several at once when the prompt is about several), or ``()`` to
    answer in text. Like the real models:

    * ``auto``: every tool the prompt is about (:func:`relevant_tools`), in parallel, even
      when the prompt does not name it; none after a tool result (the model answers it).
    * ``any`` (OpenAI ``required``, Gemini ``ANY``): the relevant tools, or the first tool.
    * a named tool: that tool. A forced choice holds after a tool result too: the model
      calls a tool again (it cannot answer in text).
    * parallel calls switched off (``disable_parallel_tool_use``, ``parallel_tool_calls``):
      at most one call.
    """
    if not req.tools or req.tool_choice == "none":
        return ()
    if req.tool_choice == "auto":
        chosen = () if req.after_tool_result else relevant_tools(req, topic_text)
    elif req.tool_choice == "any":
        chosen = relevant_tools(req, topic_text) or req.tools[:1]
    else:
        chosen = tuple(t for t in req.tools if t.name == req.tool_choice)[:1]
    return chosen if req.parallel_tool_calls else chosen[:1]


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


#: Thoughts of a model that thinks unasked ("dynamic" thinking: Gemini 2.5 Flash/Pro, 3.x):
#: the recorded real answers to short prompts (../shared/replay-corpus) carry 20 to 1,200
#: ``thoughtsTokenCount``, median about 130; drawn log-uniformly from this range.
DYNAMIC_THINKING = (32, 1024)


def default_thinking(provider: str, info: ModelInfo) -> str | None:
    """How a model thinks when the request asks nothing: ``"medium"`` (OpenAI reasoning
    models), ``"dynamic"`` (Gemini 2.5 Flash and Pro, every 3.x model; 2.5 Flash-Lite
    thinks only when asked), or None (no thinking, as on Anthropic)."""
    caps = info.capabilities
    if provider == "google":
        if caps.reasoning_style == "gemini_level" or caps.reasoning_always_on:
            return "dynamic"
        if caps.reasoning_style == "gemini_budget" and "lite" not in info.api_id:
            return "dynamic"
        return None
    return "medium" if caps.reasoning_always_on else None


def reasoning_tokens(
    effort: str | None, budget: int | None, default: str | None, rng: random.Random
) -> int:
    """Reasoning tokens for a budget (60–90% of it), an effort word (±25%), or, when the
    request asks for neither, the model's ``default`` (:func:`default_thinking`)."""
    if budget is not None:
        return int(budget * rng.uniform(0.6, 0.9)) if budget > 0 else 0
    if effort is None:
        effort = default
    if effort is None or effort == "none":
        return 0
    if effort == "dynamic":
        low, high = DYNAMIC_THINKING
        return int(math.exp(rng.uniform(math.log(low), math.log(high))))
    base = EFFORT_TOKENS.get(effort, EFFORT_TOKENS["medium"])
    return max(1, int(base * rng.uniform(0.75, 1.25)))


def fit_to_limit(reasoning: int, answer_tokens: int, cap: int) -> tuple[int, int]:
    """(reasoning, answer tokens allowed) under an output limit ``cap``.

    Every provider counts thoughts against the output limit and thinks first, so the
    thoughts take what they need (up to ``cap``) and the answer gets the rest: a limit
    smaller than the thinking leaves an empty answer that ends on the length limit (Gemini
    ``MAX_TOKENS`` with no text, OpenAI ``length`` with empty content).
    """
    reasoning = min(reasoning, cap)
    return reasoning, min(answer_tokens, cap - reasoning)


def thinking_summary(topic_text: str) -> str:
    """A short deterministic thought summary."""
    topic = " ".join(topic_text.split()[:8]) or "the request"
    return (
        f"The user asks about {topic}. I will recall the relevant facts, "
        "check them against the question and answer briefly."
    )
