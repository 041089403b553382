"""ProviderEngine and EngineExecutor on a fake adapter and fake time (no network, no Ray)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from llm.config import Settings
from llm.exceptions import (
    CircuitOpenError,
    InvalidRequestError,
    LLMError,
    ProviderConnectionError,
    ProviderOverloadedError,
    RateLimitError,
)
from llm.executor import CallContext, Executed, Executor
from llm.providers.base import (
    ProviderAdapter,
    ProviderRequest,
    ProviderResult,
    RateLimitSnapshot,
    StreamItem,
    ToolSpec,
)
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.types import Message, MessageRole, Usage
from runtime.cache_keys import gate_ttl_s, prefix_key
from runtime.engine import MemoryLedger, ProviderEngine
from runtime.limiter import AccountLimits
from runtime.local import EngineExecutor

SONNET = get_model_info("claude-sonnet-4.5")
GPT = get_model_info("gpt-5-mini")
LONG_SYSTEM = "Policy clause number seven applies. " * 300  # well over 1024 tokens
USAGE = Usage(input_tokens=1200, output_tokens=300)


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class CutAfterChunk:
    """Script entry: stream one chunk, then fail with ``error``."""

    def __init__(self, error: LLMError) -> None:
        self.error = error


class FakeAdapter(ProviderAdapter):
    """Plays a script of outcomes (results, errors) and logs every call as an event."""

    provider = "anthropic"

    def __init__(self, script: list | None = None, *, stream_delay: int = 0) -> None:
        self.settings = Settings()
        self._owns_http_client = False
        self.script = deque(script or [])
        self.stream_delay = stream_delay
        self.events: list[tuple[str, str]] = []
        self.closed = False

    def _next(self, request: ProviderRequest) -> object:
        if self.script:
            return self.script.popleft()
        return ProviderResult(text=f"answer to {_tag(request)}", usage=USAGE)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        self.events.append(("generate", _tag(request)))
        outcome = self._next(request)
        await asyncio.sleep(0)
        if isinstance(outcome, CutAfterChunk):
            raise outcome.error
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        tag = _tag(request)
        self.events.append(("stream", tag))
        outcome = self._next(request)
        for _ in range(self.stream_delay):
            await asyncio.sleep(0)
        if isinstance(outcome, Exception):
            raise outcome
        self.events.append(("first-chunk", tag))
        if isinstance(outcome, CutAfterChunk):
            yield "Hel"
            raise outcome.error
        half = len(outcome.text) // 2
        yield outcome.text[:half]
        await asyncio.sleep(0)
        yield outcome.text[half:]
        yield outcome

    async def count_tokens(self, request: ProviderRequest) -> int:
        return 0

    async def aclose(self) -> None:
        self.closed = True

    def kinds(self, kind: str) -> list[str]:
        return [tag for event, tag in self.events if event == kind]


def _tag(request: ProviderRequest) -> str:
    return request.messages[-1].text()


def _request(text: str = "hi", *, system: str | None = None, model=SONNET) -> ProviderRequest:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    messages.append(Message(role=MessageRole.USER, content=text))
    return ProviderRequest(
        model=model, messages=tuple(messages), max_tokens=500, enable_caching=system is not None
    )


def _engine(adapter: FakeAdapter, time: FakeTime, **kwargs) -> ProviderEngine:
    kwargs.setdefault("retry_config", RetryConfig(max_retries=3, initial_delay=1.0))
    return ProviderEngine(
        "anthropic",
        Settings(),
        adapter=adapter,
        clock=time.clock,
        sleep=time.sleep,
        rand=lambda: 1.0,
        **kwargs,
    )


def _ctx(request_id: str = "req-1", job_id: str | None = None) -> CallContext:
    return CallContext(request_id=request_id, job_id=job_id, row_id="7" if job_id else None)


async def _collect(stream: AsyncIterator[str | Executed]) -> tuple[list[str], Executed | None]:
    chunks: list[str] = []
    final = None
    async for item in stream:
        if isinstance(item, Executed):
            final = item
        else:
            chunks.append(item)
    return chunks, final


# --- ordering ----------------------------------------------------------------------------


async def test_policies_run_in_contract_order():
    time, log = FakeTime(), []
    snapshot = RateLimitSnapshot(requests_limit=1000, requests_remaining=999)
    adapter = FakeAdapter([ProviderResult(text="ok", usage=USAGE, rate_limit=snapshot)])
    ledger = MemoryLedger()
    engine = _engine(adapter, time, limits=AccountLimits(rpm=1000), ledger=ledger)

    def spy(owner, name):
        original = getattr(owner, name)
        if asyncio.iscoroutinefunction(original):

            async def wrapped(*args, **kwargs):
                log.append(name)
                return await original(*args, **kwargs)
        else:

            def wrapped(*args, **kwargs):
                log.append(name)
                return original(*args, **kwargs)

        setattr(owner, name, wrapped)

    spy(engine.breaker, "check")
    spy(engine.gate, "enter")
    spy(engine.limiter, "reserve")
    spy(engine.limiter, "settle")
    spy(engine.limiter, "observe")
    spy(engine.breaker, "record_success")
    spy(ledger, "record")
    original_stream = adapter.stream

    def stream(request):
        log.append("adapter.stream")
        return original_stream(request)

    adapter.stream = stream

    await engine.execute(_request(system=LONG_SYSTEM), _ctx())

    assert log == [
        "check",
        "enter",
        "reserve",
        "adapter.stream",  # a cold-prefix leader is sent as a stream
        "settle",
        "observe",
        "record_success",
        "record",
    ]


async def test_short_or_uncached_prompts_skip_the_gate():
    time = FakeTime()
    adapter = FakeAdapter()
    engine = _engine(adapter, time)
    await engine.execute(_request(system="short system"), _ctx("a"))
    await engine.execute(_request(), _ctx("b"))
    stats = engine.stats()
    assert stats.cache_leaders == stats.cache_followers == stats.cache_warm_hits == 0
    assert adapter.kinds("stream") == []


def test_prefix_key_covers_model_tools_and_system_but_not_the_question():
    base = _request("one", system=LONG_SYSTEM)
    assert prefix_key(base) == prefix_key(_request("two", system=LONG_SYSTEM))
    assert prefix_key(base) != prefix_key(_request("one", system=LONG_SYSTEM + "x"))
    assert prefix_key(base) != prefix_key(base.model_copy(update={"model": GPT}))
    tool = ToolSpec(name="lookup", description="Find a clause")
    assert prefix_key(base) != prefix_key(base.model_copy(update={"tools": (tool,)}))
    assert gate_ttl_s(base) < 300 < gate_ttl_s(base.model_copy(update={"cache_ttl": "1h"})) < 3600


# --- retries, 429s and metering ----------------------------------------------------------


async def test_429_then_success_penalizes_and_bills_once():
    time = FakeTime()
    usage = Usage(input_tokens=10_000, cached_tokens=8_000, output_tokens=500)
    adapter = FakeAdapter(
        [RateLimitError("slow down", retry_after_s=7.0), ProviderResult(text="ok", usage=usage)]
    )
    ledger = MemoryLedger()
    engine = _engine(adapter, time, limits=AccountLimits(rpm=100, itpm=100_000), ledger=ledger)
    penalties: list[float] = []
    penalize = engine.limiter.penalize
    engine.limiter.penalize = lambda s, **kw: (penalties.append(s), penalize(s, **kw))[1]

    executed = await engine.execute(_request("q"), _ctx("req-429", job_id="job"))

    assert executed.attempts == 2
    assert penalties == [7.0]
    assert time.sleeps == [7.0]  # the retry waited the server's hint
    [record] = ledger.records
    assert (record.status, record.attempts, record.request_id) == ("ok", 2, "req-429")
    assert (record.job_id, record.row_id, record.model) == ("job", "7", "claude-sonnet-4.5")
    # $3/M uncached input, $0.30/M cache reads, $15/M output.
    assert record.input_cost == Decimal("0.006")  # 2,000 x 3 / 1e6
    assert record.cache_read_cost == Decimal("0.0024")  # 8,000 x 0.30 / 1e6
    assert record.output_cost == Decimal("0.0075")  # 500 x 15 / 1e6
    assert record.total_cost == Decimal("0.0159")
    assert record.cache_savings == Decimal("0.0216")  # 8,000 x (3 - 0.30) / 1e6
    assert (record.cached_tokens, record.streamed) == (8_000, False)
    stats = engine.stats()
    assert (stats.rate_limited, stats.retries, stats.successes, stats.failures) == (1, 1, 1, 0)


async def test_failed_call_is_not_billed_or_recorded():
    time = FakeTime()
    adapter = FakeAdapter([InvalidRequestError("bad")])
    ledger = MemoryLedger()
    engine = _engine(adapter, time, ledger=ledger)
    with pytest.raises(InvalidRequestError) as caught:
        await engine.execute(_request(), _ctx(job_id="job"))
    assert caught.value.attempts == 1
    assert ledger.records == []
    assert (engine.stats().failures, engine.stats().in_flight) == (1, 0)


async def test_ledger_failure_is_raised_as_llm_error():
    class BrokenLedger(MemoryLedger):
        async def record(self, record, result=None):
            raise OSError("disk full")

    engine = _engine(FakeAdapter(), FakeTime(), ledger=BrokenLedger())
    with pytest.raises(LLMError, match="ledger write failed"):
        await engine.execute(_request(), _ctx())


# --- idempotency -------------------------------------------------------------------------


async def test_rerun_of_a_job_row_is_replayed_from_the_journal():
    time, ledger = FakeTime(), MemoryLedger()
    adapter = FakeAdapter()
    first = await _engine(adapter, time, ledger=ledger).execute(_request("q"), _ctx("r", "job"))
    restarted = _engine(adapter, time, ledger=ledger)  # e.g. a restarted actor

    again = await restarted.execute(_request("q"), _ctx("r", "job"))

    assert len(adapter.kinds("generate")) == 1
    assert again.result.text == first.result.text
    assert again.result.provider_details["replayed"] is True
    assert "replayed" not in first.result.provider_details
    assert len(ledger.billed()) == 1 and ledger.duplicates == 0
    assert restarted.stats().replayed == 1


async def test_replayed_stream_yields_the_journaled_answer():
    time, ledger = FakeTime(), MemoryLedger()
    adapter = FakeAdapter()
    first = await _engine(adapter, time, ledger=ledger).execute(_request("q"), _ctx("r", "job"))
    chunks, final = await _collect(
        _engine(adapter, time, ledger=ledger).execute_stream(_request("q"), _ctx("r", "job"))
    )
    assert "".join(chunks) == first.result.text
    assert final.result.provider_details["replayed"] is True
    assert adapter.kinds("stream") == []


async def test_calls_without_a_job_are_not_journaled():
    time, ledger = FakeTime(), MemoryLedger()
    adapter = FakeAdapter()
    engine = _engine(adapter, time, ledger=ledger)
    await engine.execute(_request("q"), _ctx("same-id"))
    await engine.execute(_request("q"), _ctx("same-id"))
    assert len(adapter.kinds("generate")) == 2
    assert await ledger.lookup(["same-id"]) == {}


# --- prompt-cache gate -------------------------------------------------------------------


async def test_cold_prefix_followers_start_after_the_leaders_first_chunk():
    time = FakeTime()
    adapter = FakeAdapter(stream_delay=5)  # the leader takes a while to start
    engine = _engine(adapter, time, limits=AccountLimits(rpm=1000))
    requests = [_request(f"question {i}", system=LONG_SYSTEM) for i in range(10)]

    results = await asyncio.gather(
        *(engine.execute(req, _ctx(f"r{i}")) for i, req in enumerate(requests))
    )

    assert len(adapter.kinds("stream")) == 1
    assert len(adapter.kinds("generate")) == 9
    first_chunk = adapter.events.index(("first-chunk", adapter.kinds("stream")[0]))
    generate_at = [i for i, (kind, _) in enumerate(adapter.events) if kind == "generate"]
    assert min(generate_at) > first_chunk
    assert [r.result.text for r in results] == [f"answer to question {i}" for i in range(10)]
    stats = engine.stats()
    assert (stats.cache_leaders, stats.cache_followers, stats.cache_warm_hits) == (1, 9, 0)
    await engine.execute(_request("later", system=LONG_SYSTEM), _ctx("late"))
    assert engine.stats().cache_warm_hits == 1


async def test_failed_leader_hands_leadership_to_a_follower():
    time = FakeTime()
    adapter = FakeAdapter([InvalidRequestError("bad")], stream_delay=3)
    engine = _engine(adapter, time)
    outcomes = await asyncio.gather(
        *(engine.execute(_request(f"q{i}", system=LONG_SYSTEM), _ctx(f"r{i}")) for i in range(3)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], InvalidRequestError)
    assert all(isinstance(o, Executed) for o in outcomes[1:])
    assert len(adapter.kinds("stream")) == 2  # the promoted follower leads as a stream
    assert len(adapter.kinds("generate")) == 1


# --- circuit breaker ---------------------------------------------------------------------


async def test_breaker_opens_after_repeated_overloads():
    time = FakeTime()
    # The engine's breaker needs 20 known outcomes, mostly failures, before it opens.
    adapter = FakeAdapter([ProviderOverloadedError("busy") for _ in range(20)])
    engine = _engine(adapter, time, retry_config=RetryConfig(max_retries=0))
    for i in range(20):
        with pytest.raises(ProviderOverloadedError):
            await engine.execute(_request(), _ctx(f"r{i}"))

    with pytest.raises(CircuitOpenError) as caught:
        await engine.execute(_request(), _ctx("blocked"))

    assert len(adapter.kinds("generate")) == 20  # the 21st call never reached the provider
    assert caught.value.retry_after_s == pytest.approx(30.0)
    assert engine.stats().breaker_state == "open"
    time.now += 30.0  # cooldown over: one trial goes through and closes the circuit
    await engine.execute(_request(), _ctx("trial"))
    assert engine.stats().breaker_state == "closed"


# --- streaming ---------------------------------------------------------------------------


async def test_stream_is_not_retried_after_the_first_chunk():
    time, ledger = FakeTime(), MemoryLedger()
    adapter = FakeAdapter([CutAfterChunk(ProviderConnectionError("cut"))])
    engine = _engine(adapter, time, ledger=ledger)
    chunks: list[str] = []
    with pytest.raises(ProviderConnectionError) as caught:
        async for item in engine.execute_stream(_request(), _ctx()):
            chunks.append(item)
    assert chunks == ["Hel"]
    assert len(adapter.kinds("stream")) == 1
    assert caught.value.attempts == 1
    assert ledger.records == []
    assert (engine.stats().failures, engine.stats().in_flight) == (1, 0)


async def test_stream_is_retried_before_the_first_chunk_and_metered():
    time, ledger = FakeTime(), MemoryLedger()
    adapter = FakeAdapter([ProviderOverloadedError("busy")])
    engine = _engine(adapter, time, ledger=ledger)
    chunks, final = await _collect(engine.execute_stream(_request("q"), _ctx("s", "job")))
    assert "".join(chunks) == "answer to q"
    assert final.attempts == 2
    assert len(adapter.kinds("stream")) == 2
    [record] = ledger.records
    assert (record.streamed, record.attempts, record.output_tokens) == (True, 2, 300)
    assert await ledger.lookup(["s"]) == {"s": final}


# --- limiter accounting ------------------------------------------------------------------


async def test_reservations_are_settled_to_real_usage_and_refunded_on_failure():
    time = FakeTime()  # never advances here, so buckets do not refill
    # Buckets hold half a second of each limit: 100 requests, 50,000 and 20,000 tokens.
    limits = AccountLimits(rpm=12_000, itpm=6_000_000, otpm=2_400_000)
    adapter = FakeAdapter([ProviderResult(text="ok", usage=USAGE), InvalidRequestError("no")])
    engine = _engine(adapter, time, limits=limits)

    await engine.execute(_request(), _ctx("ok"))
    expected = {"rpm": 99, "itpm": 50_000 - 1200, "otpm": 20_000 - 300}
    assert engine.limiter.levels() == pytest.approx(expected)

    with pytest.raises(InvalidRequestError):
        await engine.execute(_request(), _ctx("bad"))
    expected["rpm"] = 98  # the request counts; its tokens are refunded
    assert engine.limiter.levels() == pytest.approx(expected)
    assert engine.stats().headroom == pytest.approx(48_800 / 50_000)  # the tightest bucket


# --- EngineExecutor ----------------------------------------------------------------------


async def test_engine_executor_routes_per_provider_with_default_limits(monkeypatch):
    monkeypatch.setenv("LLM_LIMITS_ANTHROPIC_RPM", "123")
    made: dict[str, FakeAdapter] = {}

    def factory(provider: str, settings: Settings) -> FakeAdapter:
        made[provider] = FakeAdapter()
        return made[provider]

    executor = EngineExecutor(Settings(), adapter_factory=factory, sleep=FakeTime().sleep)
    assert isinstance(executor, Executor)
    await executor.execute(_request("a"), _ctx("1"))
    chunks, final = await _collect(executor.execute_stream(_request("b", model=GPT), _ctx("2")))

    assert set(made) == {"anthropic", "openai"}
    assert made["anthropic"].kinds("generate") == ["a"]
    assert "".join(chunks) == final.result.text == "answer to b"
    assert executor.engine("anthropic").limiter.limits.rpm == 123
    assert executor.engine("openai").limiter.limits.rpm is None
    await executor.aclose()
    assert made["anthropic"].closed and made["openai"].closed


async def test_engine_executor_explicit_limits_and_shared_ledger():
    ledger = MemoryLedger()
    executor = EngineExecutor(
        Settings(),
        limits={"anthropic": AccountLimits(rpm=5)},
        ledger=ledger,
        adapter_factory=lambda provider, settings: FakeAdapter(),
    )
    await executor.execute(_request("a"), _ctx("1"))
    await executor.execute(_request("b", model=GPT), _ctx("2"))
    assert executor.engine("anthropic").limiter.limits.rpm == 5
    assert executor.engine("openai").limiter.known_limits() == {}  # none configured or learned
    assert [r.provider for r in ledger.records] == ["anthropic", "openai"]
    assert set(executor.stats()) == {"anthropic", "openai"}


# --- price once -------------------------------------------------------------------------


async def test_a_call_is_priced_once_and_the_price_travels_to_response_tracker_and_ledger(
    monkeypatch,
):
    import datetime as dt

    import llm.pricing
    from llm.service import LLMService

    calls: list[str] = []
    real = llm.pricing.price_call

    def counting(model, usage, **kwargs):
        calls.append(model.name)
        return real(model, usage, **kwargs)

    import llm.executor

    monkeypatch.setattr(llm.executor, "price_call", counting)  # the one pricing point
    time, ledger = FakeTime(), MemoryLedger()
    when = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    executor = EngineExecutor(
        Settings(),
        RetryConfig(max_retries=0),
        limits={},
        ledger=ledger,
        adapter_factory=lambda provider, settings: FakeAdapter(),
        clock=time.clock,
        sleep=time.sleep,
        now=lambda: when,
    )
    service = LLMService(settings=Settings(), executor=executor, today=dt.date(2026, 11, 1))
    async with service:
        response = await service.generate(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "hi"}]
        )
        stream = service.generate_stream(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "hi"}]
        )
        _ = [chunk async for chunk in stream]
    assert calls == ["claude-sonnet-4.5", "claude-sonnet-4.5"]  # once per call, in the engine
    row = ledger.records[0]
    assert response.cost is not None and response.cost.total_cost == row.total_cost
    assert response.cache_savings == row.cache_savings and row.ts == when
    tracked = service.cost_tracker.records()
    assert [r["total_cost"] for r in tracked] == [row.total_cost, ledger.records[1].total_cost]
    assert stream.response.cost == response.cost
