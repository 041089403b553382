"""Recorded real provider traffic, replayed through the official SDKs to the adapters.

Every exchange of ``../shared/replay-corpus`` (VCR cassettes recorded against the real
Anthropic, OpenAI and Gemini APIs by pydantic-ai, simonw/llm, llm-anthropic and llm-gemini;
see its README) that this project can express is one test case. The recorded response is
served by :class:`tests.replay_support.ReplayTransport` (an ``httpx2.MockTransport`` that
checks the SDK called the recorded operation for the recorded model) to the adapter, through
the in-process runtime (:class:`runtime.local.EngineExecutor`: retries, metering, ledger),
and the result is compared with what the recorded bytes say
(:func:`tests.replay_support.expected`, written from the wire formats, not from the
adapters): text, tool calls (names, arguments, ids), finish reason, usage in the README's
convention, typed errors with their request id, the cost on the ledger row, and that a
finished answer is paid for exactly once. The cost of every answer of a registry model is
also checked against ``genai-prices`` (an independent price database). Finally every
recorded request to a provider's own API is sent to the emulator, which must accept what
the real API accepted, reject what it rejected, and answer a forced tool choice with a call.

Replayed although the project could not have sent the request as recorded, because the
answer is an ordinary one the adapters must map: requests with inputs the project does not
send (documents, image URLs, audio, prefilled assistant turns, stop sequences, top_k,
``output_config`` effort, OpenAI ``moderation``/``prompt_cache_key``), OpenAI-compatible
servers (Groq, Cerebras, Together, Hugging Face router, Gemini's OpenAI endpoint,
pydantic's demo endpoint), Vertex AI ``generateContent`` (same body as the Developer API),
and streams recorded by llm-gemini as one JSON array (re-framed as SSE, which is what the
SDK asks for with ``alt=sse``).

Not expressible, and why (:func:`tests.replay_support.unsupported` decides, and
:func:`test_corpus_split_is_pinned` pins the counts so a change is seen):

* **OpenAI Responses API** (``/v1/responses``, ``/responses/compact``, ``/input_tokens``,
  conversations, background mode): the OpenAI adapter speaks Chat Completions only (its
  module docstring says why).
* **Other endpoints the project never calls**: files, vector stores, file-search stores,
  embeddings, token counting (``count_tokens``/``countTokens``), model lists, OAuth, media
  downloads, Bedrock ``invoke``/``converse``, Cohere ``v2/chat``.
* **Server-side tools**: Anthropic web search/fetch, code execution, memory, text editor,
  advisor, MCP servers, containers, compaction (``context_management``); Gemini Google
  Search, URL context, code execution, file search, Maps; OpenAI ``web_search_options``.
  Their answers carry blocks and per-use charges the neutral result cannot represent.
* **OpenAI ``n > 1``** (none recorded; the project asks for one choice).
* A Chat Completions recording whose answer is not a Chat Completions body (pydantic's echo
  endpoint answering ``text/plain``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from llm.config import Settings
from llm.emulator.engine import EmulatorConfig
from llm.emulator.server import Emulator
from llm.executor import CallContext, Executed
from llm.models import Capabilities, ModelInfo, PriceTier, Pricing
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest
from llm.providers.factory import create_adapter
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.types import Message, MessageRole
from runtime.ledger_sink import MemoryLedger
from runtime.local import EngineExecutor
from tests import replay_support as rs
from tests.dates import REFERENCE_DAY, engine_on

pytestmark = pytest.mark.skipif(rs.CORPUS is None, reason="replay corpus absent")

EXCHANGES = rs.all_exchanges()
CASES = [ex for ex in EXCHANGES if rs.unsupported(ex) is None]
KEY = "replay-key"
SETTINGS = Settings(
    anthropic_api_key=KEY,
    openai_api_key=KEY,
    google_api_key=KEY,
    anthropic_base_url="http://replay.test",
    openai_base_url="http://replay.test/v1",
    google_base_url="http://replay.test",
    # The recorded answer answers the recorded kind of call: a plain call stays plain.
    stream_slow_start=False,
)
#: Price of models the registry does not know (compatible servers, future models).
STAND_IN = Pricing(standard=PriceTier(input=Decimal("1"), output=Decimal("3")))


def model_for(ex: rs.Exchange) -> ModelInfo:
    """The registry's model (with the recorded id on the wire), or a priced stand-in."""
    info = get_model_info(ex.model)
    if info is not None and info.provider == ex.provider:
        return info.model_copy(update={"api_id": ex.model})
    caps = Capabilities(tools=True, vision=True, structured_output=True)
    return ModelInfo(
        name=ex.model or "unknown",
        provider=ex.provider,
        api_id=ex.model or "unknown",
        context_window=1_000_000,
        max_output_tokens=64_000,
        pricing=STAND_IN,
        capabilities=caps,
    )


async def _no_sleep(_seconds: float) -> None:
    return None


async def replay(
    ex: rs.Exchange, *, slow_start_stream: bool = False
) -> tuple[Executed | Exception, rs.ReplayTransport, Any, list[str]]:
    """Run ``ex``'s request through the in-process runtime against its recorded answer;
    returns the outcome, the transport, the ledger and the streamed text chunks.

    ``slow_start_stream``: make a plain call (``execute``) of a recorded stream, which the
    engine sends as a stream because it is the account's first (limits not known yet)."""
    transport = rs.ReplayTransport(ex)
    ledger = MemoryLedger()

    def factory(provider: str, settings: Settings):
        return create_adapter(provider, settings, http_client=transport.client())

    executor = EngineExecutor(
        SETTINGS.with_overrides(stream_slow_start=slow_start_stream),
        RetryConfig(max_retries=3, initial_delay=0.0, max_delay=0.0, jitter=False),
        limits={},
        ledger=ledger,
        adapter_factory=factory,
        sleep=_no_sleep,
        rand=lambda: 0.0,
    )
    request = ProviderRequest(
        model=model_for(ex),
        messages=(Message(role=MessageRole.USER, content="replayed"),),
        max_tokens=1024,
    )
    ctx = CallContext(request_id=f"replay-{ex.index}")
    outcome: Executed | Exception
    chunks: list[str] = []
    try:
        if ex.stream and not slow_start_stream:
            final = None
            async for item in executor.execute_stream(request, ctx):
                if isinstance(item, Executed):
                    final = item
                else:
                    chunks.append(item)
            assert final is not None
            outcome = final
        else:
            outcome = await executor.execute(request, ctx)
    except Exception as exc:  # the typed error is what is compared
        outcome = exc
    finally:
        await executor.aclose()
    return outcome, transport, ledger, chunks


def _check_success(ex: rs.Exchange, executed: Executed, want: rs.Expected) -> None:
    result = executed.result
    assert result.text == want.text
    assert [(c.name, c.arguments) for c in result.tool_calls] == want.tool_calls
    for call, wire_id in zip(result.tool_calls, want.tool_ids, strict=True):
        if wire_id:
            assert call.id == wire_id
        else:
            assert call.id  # a missing wire id is replaced, never left empty
    assert result.finish_reason == want.finish_reason
    assert result.raw_finish_reason == want.raw_finish_reason
    got = result.usage
    if want.reasoning_estimated:
        assert 0 < got.reasoning_tokens <= got.output_tokens
        got = got.model_copy(update={"reasoning_tokens": 0})
    elif want.reasoning_seen:
        assert got.reasoning_tokens > 0
    assert got == want.usage
    if want.request_id:
        assert result.request_id == want.request_id


def _check_cost(ex: rs.Exchange, ledger: MemoryLedger, executed: Executed) -> None:
    (record,) = ledger.records
    cost = compute_cost(model_for(ex), executed.result.usage)
    assert record.total_cost == cost.total_cost
    assert record.input_tokens == executed.result.usage.input_tokens
    assert record.output_tokens == executed.result.usage.output_tokens


@pytest.mark.parametrize("ex", CASES, ids=[ex.case_id for ex in CASES])
def test_replayed_exchange(ex: rs.Exchange) -> None:
    outcome, transport, ledger, chunks = asyncio.run(replay(ex))
    want = rs.expected(ex)
    if want.error is not None:
        assert isinstance(outcome, Exception), outcome
        assert type(outcome).__name__ in _accepted_errors(want.error), repr(outcome)
        assert outcome.status == ex.status
        if want.request_id:
            assert outcome.request_id == want.request_id
        if want.error_message:
            assert want.error_message[:60] in outcome.message
        assert transport.calls == 1  # a 4xx is never retried
        assert ledger.records == []
        return
    if isinstance(outcome, Exception):
        raise outcome
    _check_success(ex, outcome, want)
    if ex.stream:
        assert "".join(chunks) == outcome.result.text  # the caller saw the whole answer
    assert transport.calls == 1, "a finished answer was bought more than once"
    assert outcome.attempts == 1
    _check_cost(ex, ledger, outcome)


SLOW_START_CASES = [
    ex
    for ex in CASES
    if ex.stream and ex.provider in ("anthropic", "openai") and rs.expected(ex).error is None
]


@pytest.mark.parametrize("ex", SLOW_START_CASES, ids=[ex.case_id for ex in SLOW_START_CASES])
def test_a_plain_call_sent_as_a_slow_start_stream_reads_the_recorded_stream(
    ex: rs.Exchange,
) -> None:
    # The engine sends the calls admitted before the limits are known as streams (their
    # headers come early) and accumulates them: the plain call's result is the recorded one.
    outcome, transport, ledger, _ = asyncio.run(replay(ex, slow_start_stream=True))
    if isinstance(outcome, Exception):
        raise outcome
    _check_success(ex, outcome, rs.expected(ex))
    assert transport.calls == 1 and outcome.attempts == 1
    _check_cost(ex, ledger, outcome)


def _accepted_errors(name: str) -> set[str]:
    if name == "InvalidRequestError":
        return {name, "ContextLengthError"}
    return {name}


def _reason_group(reason: str | None) -> str:
    if reason is None:
        return "replayed"
    if reason.startswith("endpoint"):
        return "endpoint not called by the project"
    if reason.startswith(("server tool", "request uses", "web search", "answer carries")):
        return "server-side tools"
    return reason.split(" (")[0]


def test_corpus_split_is_pinned() -> None:
    """How many exchanges are replayed and why the others are not (see the docstring)."""
    groups = collections.Counter(_reason_group(rs.unsupported(ex)) for ex in EXCHANGES)
    assert groups == {
        "replayed": 341,
        "endpoint not called by the project": 285,
        "server-side tools": 62,
        "the recorded answer is not a Chat Completions body": 1,
    }
    replayed = collections.Counter(
        (ex.operation, "stream" if ex.stream else "whole", "error" if ex.status >= 400 else "ok")
        for ex in CASES
    )
    assert replayed == {
        ("anthropic.messages", "whole", "ok"): 91,
        ("anthropic.messages", "stream", "ok"): 28,
        ("anthropic.messages", "whole", "error"): 1,
        ("openai.chat", "whole", "ok"): 86,
        ("openai.chat", "stream", "ok"): 14,
        ("openai.chat", "whole", "error"): 2,
        ("google.generate", "whole", "ok"): 94,
        ("google.stream", "stream", "ok"): 25,
    }


def test_costs_agree_with_genai_prices() -> None:
    """Independent price check: every replayed answer of a registry model, at the provider's
    own API, costs what ``genai-prices`` (pydantic's price database) says for the recorded
    usage. A mismatch names the model whose registry price differs."""
    genai_prices = pytest.importorskip("genai_prices")
    checked, mismatches = 0, []
    for ex in CASES:
        info = model_for(ex)
        if ex.status >= 400 or info.pricing is STAND_IN or ex.host not in _REAL_HOSTS:
            continue
        usage = rs.expected(ex).usage
        theirs = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cached_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
            ),
            ex.model,
            provider_id=ex.provider,
        ).total_price
        ours = compute_cost(info, usage).total_cost
        checked += 1
        if abs(ours - theirs) > Decimal("1e-9"):
            mismatches.append((info.name, ex.case_id, ours, theirs))
    assert checked >= 150
    assert mismatches == []


_NATIVE_HOST = {
    "anthropic": "api.anthropic.com",
    "openai": "api.openai.com",
    "google": "generativelanguage.googleapis.com",
}
_REAL_HOSTS = frozenset(_NATIVE_HOST.values())


# --- the recorded requests, sent to the emulator -----------------------------------------------

_EMULATED_STYLE = {"anthropic": "anthropic_budget", "openai": "openai_effort", "google": None}


def _emulated_model(name: str) -> ModelInfo | None:
    """The registry's model, or a stand-in for a recorded model the registry lacks (older or
    newer than it), so that every recorded request can be sent to the emulator."""
    bare = name.removeprefix("models/")
    info = get_model_info(bare)
    if info is not None:
        return info
    provider = "anthropic" if bare.startswith("claude") else "google"
    if not bare.startswith(("claude", "gemini")):
        provider = "openai"
    style = _EMULATED_STYLE[provider]
    if provider == "google" and rs.GEMINI_THINKING.match(bare):
        style = "gemini_level" if not bare.startswith("gemini-2.5") else "gemini_budget"
    reasoning = style is not None and (provider != "openai" or bare.startswith(("o", "gpt-5")))
    caps = Capabilities(
        tools=True,
        vision=True,
        structured_output=True,
        reasoning=reasoning,
        reasoning_style=style if reasoning else None,
    )
    return ModelInfo(
        name=bare,
        provider=provider,
        api_id=bare,
        context_window=1_000_000,
        max_output_tokens=128_000,
        pricing=STAND_IN,
        capabilities=caps,
    )


def _forces_a_tool(ex: rs.Exchange) -> bool:
    body = ex.request_body if isinstance(ex.request_body, dict) else {}
    choice = body.get("tool_choice")
    if ex.provider == "anthropic":
        return isinstance(choice, dict) and choice.get("type") in ("any", "tool")
    if ex.provider == "openai":
        return choice == "required" or isinstance(choice, dict)
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    return config.get("mode") == "ANY"


def _called_a_tool(ex: rs.Exchange, status: int, raw: bytes) -> bool:
    if ex.provider == "google":
        chunks = rs.google_chunks(raw) if ex.stream else [json.loads(raw)]
        return any(
            "functionCall" in part
            for chunk in chunks
            for cand in chunk.get("candidates") or ()
            for part in (cand.get("content") or {}).get("parts") or ()
        )
    text = raw.decode()
    return '"tool_use"' in text if ex.provider == "anthropic" else '"tool_calls"' in text


def _retired_since_recording(ex: rs.Exchange) -> bool:
    """Whether the recorded request names a model the registry says is retired on the day the
    emulator below lives on (:data:`tests.dates.REFERENCE_DAY`: the answer must not depend on
    the date the suite runs)."""
    body = ex.request_body if isinstance(ex.request_body, dict) else {}
    name = body.get("model") or ""
    if not name:
        match = re.search(r"/models/([^/:]+)", urlsplit(ex.url).path)
        name = match.group(1) if match else ""
    info = get_model_info(name)
    return info is not None and info.status_on(REFERENCE_DAY) == "retired"


async def _send_recorded_requests() -> list[tuple[str, int, int, str]]:
    engine = engine_on(EmulatorConfig(api_key=None), REFERENCE_DAY, model_lookup=_emulated_model)
    emulator = Emulator(engine.config, engine=engine)
    await emulator.start()
    problems: list[tuple[str, int, int, str]] = []
    headers = {
        "content-type": "application/json",
        "x-api-key": KEY,
        "authorization": f"Bearer {KEY}",
        "x-goog-api-key": KEY,
        "anthropic-version": "2023-06-01",
    }
    try:
        async with httpx2.AsyncClient(timeout=60) as client:
            for ex in CASES:
                native = ex.provider is not None and ex.host == _NATIVE_HOST[ex.provider]
                if not isinstance(ex.request_body, dict) or not native:
                    continue
                parts = urlsplit(ex.url)
                url = emulator.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
                response = await client.post(
                    url, content=json.dumps(ex.request_body), headers=headers
                )
                if _retired_since_recording(ex):
                    # The real API now answers 404 for it too: the emulator must say so.
                    same = response.status_code == 404
                else:
                    same = (response.status_code < 400) == (ex.status < 400)
                if same and response.status_code < 400 and _forces_a_tool(ex):
                    same = _called_a_tool(ex, response.status_code, response.content)
                if not same:
                    problems.append(
                        (ex.case_id, ex.status, response.status_code, response.text[:160])
                    )
    finally:
        await emulator.stop()
    return problems


def test_emulator_answers_the_recorded_requests_like_the_real_apis() -> None:
    """Every recorded request sent to the emulator: accepted where the real API accepted it,
    rejected where it rejected it, and a forced tool choice answered with a tool call."""
    problems = asyncio.run(_send_recorded_requests())
    assert problems == []
