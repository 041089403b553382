"""Using the whole rate limit in the real regime, on an injected clock (no Ray, no network):
short-window buckets after idle, learning limits from headers with nothing configured (also
through a real adapter's HTTP client), adaptive in-flight slots, output-token estimates, and
the batch job's look-ahead following the runtime's capacity."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from jobs.batch_core import MIN_IN_FLIGHT, SPARE, UNKNOWN_IN_FLIGHT, BatchConfig
from llm.config import Settings
from llm.executor import CallContext
from llm.providers.anthropic import AnthropicAdapter
from llm.providers.base import ProviderRequest, RateLimitSnapshot
from llm.registry import resolve_model
from llm.types import Message, MessageRole, Usage
from runtime.engine import ProviderEngine
from runtime.inflight import HEADROOM, INITIAL_LATENCY_S, InFlightController
from runtime.inflight import SPARE as INFLIGHT_SPARE
from runtime.limiter import DEFAULT_PACE, AccountLimits, RateLimiter
from runtime.rate_headers import gemini_quota, is_generation
from runtime.resources import ensure_open_files
from runtime.token_estimates import OutputEstimate
from tests.test_provider_anthropic import _sse


class Clock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)


def limiter(clock: Clock, *, probe: bool = False, **limits) -> RateLimiter:
    return RateLimiter(
        AccountLimits(**limits),
        clock=clock,
        sleep=clock.sleep,
        probe_timeout_s=30.0 if probe else 0.0,
    )


# --- short windows --------------------------------------------------------------------------


async def test_after_an_idle_spell_at_most_half_a_second_leaves_at_once():
    clock = Clock()
    rl = limiter(clock, rpm=6000)  # 100/s; a minute's budget would be 6,000
    clock.now = 600.0  # ten idle minutes
    times = [(await rl.reserve(0, 0)).admitted_at - 600.0 for _ in range(200)]
    burst = sum(1 for t in times if t < 1e-9)
    assert burst == 50  # half a second's worth, never the minute's 6,000
    # Then the refill rate: 150 more over 1.5 s at 99.5 % of 100/s.
    assert times[-1] == pytest.approx(150 / (100 * DEFAULT_PACE), rel=1e-6)


async def test_token_bucket_holds_half_a_second_and_long_prompts_repay_their_excess():
    clock = Clock()
    rl = limiter(clock, itpm=60_000)  # 1,000 tokens/s, bucket 500
    times = [(await rl.reserve(2_000, 0)).admitted_at for _ in range(5)]
    # Each prompt is four buckets: admitted on a full bucket, the debt is repaid before the next.
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps == pytest.approx([2.0 / DEFAULT_PACE] * 4, rel=1e-6)
    # Long-run rate: 10,000 tokens in ~8 s, never more than the limit.
    assert 8_000 / times[-1] <= 1_000 * DEFAULT_PACE + 1e-6


# --- learning limits without configuration -------------------------------------------------


async def test_unconfigured_limits_are_learned_and_follow_the_headers():
    clock = Clock()
    rl = limiter(clock, probe=True)
    await rl.reserve(100, 50)
    rl.observe(
        RateLimitSnapshot(
            requests_limit=3000,
            requests_remaining=2999,
            input_tokens_limit=2_000_000,
            input_tokens_remaining=1_999_900,
            output_tokens_limit=400_000,
            output_tokens_remaining=399_950,
        )
    )
    assert rl.known_limits() == {"rpm": 3000, "itpm": 2_000_000, "otpm": 400_000}
    rl.observe(RateLimitSnapshot(requests_limit=4000))  # a learned limit follows up (new tier)
    assert rl.known_limits()["rpm"] == 4000
    configured = limiter(clock, rpm=1000)
    configured.observe(RateLimitSnapshot(requests_limit=4000))  # a configured one never rises
    assert configured.known_limits() == {"rpm": 1000}


async def test_a_learned_request_limit_lets_the_unused_slow_start_budget_out():
    clock = Clock()
    rl = RateLimiter(AccountLimits(), clock=clock, sleep=clock.sleep)  # slow start on
    sent = [await rl.reserve(0, 0) for _ in range(80)]  # the slow start's first second
    assert sent[-1].admitted_at == pytest.approx(1.0)
    # The first headers: 10,000 RPM. Half the provider's one-second window plus the refill
    # since the probe, less the 80 sent (165.8 x 1.5 - 80 = 168.8), at most 0.9 s of the
    # rate (149.3), may now go at once.
    rl.observe(RateLimitSnapshot(requests_limit=10_000, requests_remaining=9920))
    rate = 10_000 / 60 * DEFAULT_PACE
    assert rl.levels()["rpm"] == pytest.approx(0.9 * rate)
    burst = [await rl.reserve(0, 0) for _ in range(149)]
    assert [r.admitted_at for r in burst] == pytest.approx([1.0] * 149)
    assert (await rl.reserve(0, 0)).admitted_at > 1.001  # then the refill rate
    # 3,000 RPM learned only after two seconds (120 sent): 49.75 x 2.5 - 120 = 4.4 left.
    late_clock = Clock()
    late = RateLimiter(AccountLimits(), clock=late_clock, sleep=late_clock.sleep)
    for _ in range(120):
        await late.reserve(0, 0)
    late_clock.now = 2.0
    late.observe(RateLimitSnapshot(requests_limit=3000))
    assert late.levels()["rpm"] == pytest.approx(50 * DEFAULT_PACE * 2.5 - 120)
    idle_clock = Clock()
    idle = RateLimiter(AccountLimits(), clock=idle_clock, sleep=idle_clock.sleep)
    await idle.reserve(0, 0)  # only the probe went: the catch-up stops at 0.9 s of the rate
    idle_clock.now = 2.0
    idle.observe(RateLimitSnapshot(requests_limit=3000))
    assert idle.levels()["rpm"] == pytest.approx(0.9 * 50 * DEFAULT_PACE)


async def test_a_slow_start_that_outran_the_assumed_window_starts_from_an_empty_bucket():
    clock = Clock()
    rl = RateLimiter(AccountLimits(), clock=clock, sleep=clock.sleep)
    for _ in range(80):
        await rl.reserve(0, 0)
    # 600 RPM and no 429 came: the account's window is longer than the one second assumed,
    # so the slow start owes nothing; it gets no catch-up either, only the refill.
    rl.observe(RateLimitSnapshot(requests_limit=600))
    assert rl.levels()["rpm"] == 0.0
    nxt = await rl.reserve(0, 0)
    assert nxt.admitted_at == pytest.approx(1.0 + 1 / (10 * DEFAULT_PACE))


def test_openai_token_headers_become_a_combined_limit():
    rl = RateLimiter(AccountLimits(), combined_tokens=True, probe_timeout_s=0)
    rl.observe(RateLimitSnapshot(requests_limit=10_000, input_tokens_limit=2_000_000))
    assert rl.known_limits() == {"rpm": 10_000, "tpm": 2_000_000}


def test_token_headers_correct_a_configured_token_limit_not_a_second_bucket():
    # OpenAI reports one token budget; a user who configured it as input tokens (itpm) says
    # how it counts, so the headers lower that bucket instead of opening a tpm beside it.
    rl = RateLimiter(AccountLimits(itpm=169_000), combined_tokens=True, probe_timeout_s=0)
    rl.observe(RateLimitSnapshot(requests_limit=600, input_tokens_limit=150_000))
    assert rl.known_limits() == {"itpm": 150_000, "rpm": 600}
    combined = RateLimiter(AccountLimits(tpm=90_000), combined_tokens=True, probe_timeout_s=0)
    combined.observe(RateLimitSnapshot(input_tokens_limit=80_000))
    assert combined.known_limits() == {"tpm": 80_000}


def test_gemini_429_names_its_per_minute_quota():
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                            "quotaValue": "150",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"},
            ],
        }
    }
    assert gemini_quota(body) == RateLimitSnapshot(requests_limit=150, requests_remaining=0)
    daily = json.loads(json.dumps(body).replace("PerMinute", "PerDay"))
    assert gemini_quota(daily) is None
    assert is_generation("google", "/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert not is_generation("anthropic", "/v1/messages/count_tokens")


_LIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "3000",
    "anthropic-ratelimit-requests-remaining": "2999",
    "anthropic-ratelimit-input-tokens-limit": "2000000",
    "anthropic-ratelimit-input-tokens-remaining": "1999990",
    "anthropic-ratelimit-output-tokens-limit": "400000",
    "anthropic-ratelimit-output-tokens-remaining": "399990",
    "request-id": "req_1",
}
_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 3},
}


def _anthropic_stream() -> bytes:
    start = dict(_MESSAGE, content=[], stop_reason=None, usage={"input_tokens": 12})
    return _sse(
        {"type": "message_start", "message": start},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "hi"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    )


def _anthropic_answer(request: httpx2.Request) -> httpx2.Response:
    """Anthropic's answer with its rate-limit headers: a stream if the request asked for one."""
    if json.loads(request.content).get("stream"):
        headers = dict(_LIMIT_HEADERS, **{"content-type": "text/event-stream"})
        return httpx2.Response(200, content=_anthropic_stream(), headers=headers)
    return httpx2.Response(200, json=_MESSAGE, headers=_LIMIT_HEADERS)


def _request(text: str = "hello") -> ProviderRequest:
    return ProviderRequest(
        model=resolve_model("claude-sonnet-4.5"),
        messages=(Message(role=MessageRole.USER, content=text),),
        max_tokens=1000,
    )


async def test_engine_learns_limits_from_the_first_answer_through_the_http_hook():
    settings = Settings(anthropic_api_key="k", anthropic_base_url="http://anthropic.test")
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(_anthropic_answer))
    engine = ProviderEngine(
        "anthropic", settings, adapter=AnthropicAdapter(settings, http_client=client)
    )
    request = ProviderRequest(
        model=resolve_model("claude-sonnet-4.5"),
        messages=(Message(role=MessageRole.USER, content="hello"),),
        max_tokens=1000,
    )
    try:
        assert engine.limiter.known_limits() == {}
        await engine.execute(request, CallContext(request_id="r1"))
        assert engine.limiter.calibrated
        assert engine.limiter.known_limits() == {"rpm": 3000, "itpm": 2_000_000, "otpm": 400_000}
        stats = engine.stats()
        # 3,000 rpm x the initial 10 s latency (the running mean barely moved) x 2.
        assert stats.known_limits["rpm"] == 3000 and stats.in_flight_target > 900
    finally:
        await client.aclose()


async def test_the_adapter_is_built_before_the_slow_start_admits_its_first_call(monkeypatch):
    # Building the SDK client blocks the loop for a moment; if the slow start's clock ran
    # meanwhile, its missed steps would leave at once right behind the probe.
    clock = Clock()
    settings = Settings(anthropic_api_key="k", anthropic_base_url="http://anthropic.test")
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(_anthropic_answer))

    def slow_build(provider: str, settings: Settings) -> AnthropicAdapter:
        clock.now += 0.5  # half a second of imports and pool setup
        return AnthropicAdapter(settings, http_client=client)

    monkeypatch.setattr("runtime.engine.create_adapter", slow_build)
    engine = ProviderEngine("anthropic", settings, clock=clock, sleep=clock.sleep)
    admitted: list[float] = []
    reserve = engine.limiter.reserve

    async def spy(*args: object) -> object:
        reservation = await reserve(*args)
        admitted.append(reservation.admitted_at)
        return reservation

    monkeypatch.setattr(engine.limiter, "reserve", spy)
    request = ProviderRequest(
        model=resolve_model("claude-sonnet-4.5"),
        messages=(Message(role=MessageRole.USER, content="hello"),),
        max_tokens=1000,
    )
    try:
        await engine.execute(request, CallContext(request_id="r1"))
        assert admitted == [0.5]  # the probe's clock starts once the client exists
    finally:
        await client.aclose()


class _Recorder:
    """A MockTransport handler that records which requests asked for a stream."""

    def __init__(self, refuse_streams: bool = False) -> None:
        self.streamed: list[bool] = []
        self.max_tokens: list[int] = []
        self.refuse_streams = refuse_streams

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        stream = bool(body.get("stream"))
        self.streamed.append(stream)
        self.max_tokens.append(body["max_tokens"])
        if stream and self.refuse_streams:
            error = {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "streaming not allowed"},
            }
            return httpx2.Response(400, json=error, headers={"request-id": "req_x"})
        return _anthropic_answer(request)


def _engine_on(handler: _Recorder) -> tuple[ProviderEngine, httpx2.AsyncClient]:
    settings = Settings(anthropic_api_key="k", anthropic_base_url="http://anthropic.test")
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    adapter = AnthropicAdapter(settings, http_client=client)
    return ProviderEngine("anthropic", settings, adapter=adapter), client


async def test_slow_start_calls_go_out_as_streams_so_their_headers_come_early():
    # A stream's headers come before its first token, a whole answer's only with its body:
    # the calls admitted before the limits are known are streamed, the rest are not.
    recorder = _Recorder()
    engine, client = _engine_on(recorder)
    try:
        first = await engine.execute(_request("one"), CallContext(request_id="r1"))
        assert engine.limiter.calibrated
        second = await engine.execute(_request("two"), CallContext(request_id="r2"))
    finally:
        await client.aclose()
    assert recorder.streamed == [True, False]
    assert engine.stats().slow_start_streams == 1
    # The accumulated stream is the same answer as the whole one.
    for field in ("text", "usage", "finish_reason", "request_id", "rate_limit"):
        assert getattr(first.result, field) == getattr(second.result, field)


async def test_an_account_that_refuses_streams_gets_the_plain_call():
    # OpenAI answers 400 to streams of some models until the organisation is verified.
    recorder = _Recorder(refuse_streams=True)
    engine, client = _engine_on(recorder)
    try:
        executed = await engine.execute(_request(), CallContext(request_id="r1"))
    finally:
        await client.aclose()
    assert executed.result.text == "hi"
    assert recorder.streamed == [True, False]
    assert engine.stats().failures == 0 and engine.stats().retries == 0


async def test_the_limiter_reserves_the_output_limit_the_adapter_sends(monkeypatch):
    # Anthropic's OTPM counts the max_tokens sent at admission, thinking budget included:
    # reserving the caller's max_tokens alone would undercount a thinking request 17-fold.
    recorder = _Recorder()
    engine, client = _engine_on(recorder)
    asked: list[int] = []
    reserve = engine.limiter.reserve

    async def spy(input_tokens: int, output_tokens: int) -> object:
        asked.append(output_tokens)
        return await reserve(input_tokens, output_tokens)

    monkeypatch.setattr(engine.limiter, "reserve", spy)
    request = _request().model_copy(update={"max_tokens": 500, "reasoning_effort": "medium"})
    try:
        await engine.execute(request, CallContext(request_id="r1"))
    finally:
        await client.aclose()
    assert recorder.max_tokens == asked == [8192 + 500]


def test_only_accounts_whose_headers_carry_limits_stream_their_slow_start():
    settings = Settings(google_api_key="k", anthropic_api_key="k")
    assert not ProviderEngine("google", settings)._stream_slow_start  # no rate-limit headers
    assert ProviderEngine("anthropic", settings)._stream_slow_start


async def test_a_429_for_a_request_sent_after_the_previous_one_cuts_the_pace():
    clock = Clock()
    rl = limiter(clock, rpm=600)
    first = await rl.reserve(0, 0)
    rl.penalize(1.0, admitted_at=first.admitted_at)  # the first 429: pause, buckets emptied
    assert rl.pace == DEFAULT_PACE
    second = await rl.reserve(0, 0)  # sent after the pause ...
    rl.penalize(1.0, admitted_at=second.admitted_at)  # ... and refused too: pace too fast
    assert rl.pace == pytest.approx(DEFAULT_PACE * 0.8)
    clock.now += 10.0
    rl.headroom()  # recovers by half a percent per second
    assert rl.pace == pytest.approx(DEFAULT_PACE * 0.8 + 0.05)


# --- adaptive in-flight -------------------------------------------------------------------


class Rates:
    def __init__(self, rate: float | None, calibrated: bool = True) -> None:
        self.rate = rate
        self.calibrated = calibrated

    def request_rate(self) -> float | None:
        return self.rate


def test_in_flight_target_is_rate_times_latency_with_headroom():
    clock = Clock()
    rates = Rates(50.0)
    control = InFlightController(rates, max_in_flight=2048, clock=clock)
    assert control.target() == int(50 * INITIAL_LATENCY_S * HEADROOM) + INFLIGHT_SPARE
    for _ in range(200):  # answers that take 4 s: the running mean follows
        clock.now += 0.02
        control.finished(started_at=clock.now - 4.0, ok=True)
    assert control.latency_s == pytest.approx(4.0, abs=0.01)
    assert control.target() == pytest.approx(50 * 4.0 * HEADROOM + INFLIGHT_SPARE, abs=2)
    rates.rate = 10_000 / 60  # a bigger account: over 800 in flight at 4 s
    assert control.target() == pytest.approx(10_000 / 60 * 4 * HEADROOM + INFLIGHT_SPARE, abs=2)
    rates.rate = 1e6
    assert control.target() == 2048  # never beyond the pool


async def test_slots_wait_first_in_first_out_and_wake_when_the_target_grows():
    clock = Clock()
    rates = Rates(None, calibrated=True)  # no headers: a congestion window, starting at 1
    control = InFlightController(rates, clock=clock)
    await control.acquire()
    order: list[int] = []

    async def call(n: int) -> None:
        await control.acquire()
        order.append(n)

    waiters = [asyncio.create_task(call(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert order == [] and control.waiting == 3
    rates.rate = 0.5  # a limit was learned: 0.5/s x 10 s x 2 + 8 = 18 slots
    control.wake()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2] and control.in_flight == 4


def test_window_without_headers_slow_starts_and_halves_once_per_429_burst():
    clock = Clock()
    control = InFlightController(Rates(None), clock=clock)
    assert control.target() == 1
    for _ in range(15):
        control.finished(started_at=clock.now, ok=True)
    assert control.target() == 16  # one more per answer: doubling per round trip
    clock.now = 10.0
    control.finished(started_at=9.0, ok=False, rate_limited=True)
    assert control.target() == 8
    control.finished(started_at=9.5, ok=False, rate_limited=True)  # same burst: no second cut
    assert control.target() == 8
    for _ in range(9):
        control.finished(started_at=clock.now, ok=True)
    assert control.target() == 9  # additive increase after the first 429: +1 per window


def test_calibrating_limiter_leaves_admission_to_its_slow_start():
    control = InFlightController(Rates(None, calibrated=False), max_in_flight=500)
    assert control.target() == 500
    assert control.reported() == 0  # nothing to size a batch by yet


# --- output-token estimates ---------------------------------------------------------------


def test_output_estimate_learns_the_share_of_max_tokens_answers_use():
    estimate = OutputEstimate()
    assert estimate.estimate(4096) == 4096  # nothing seen yet: what the provider counts
    for output in [100, 120, 90, 400, 110, 95, 105, 130, 80, 100, 90, 100, 120, 110, 100, 95]:
        estimate.learn(output, 4096)
    # The 90th percentile (130 tokens) plus 5 % of max_tokens: far below 4,096.
    assert estimate.estimate(4096) == 130 + 205
    assert (
        estimate.estimate(1000) == 82
    )  # ceil(1000 x (130 / 4096 + 0.05)): scales with the request's own max_tokens
    for _ in range(300):
        estimate.learn(4096, 4096)  # answers now run to the cap
    assert estimate.estimate(4096) == 4096


async def test_large_max_tokens_with_short_answers_do_not_starve_the_otpm_bucket():
    clock = Clock()
    rl = limiter(clock, otpm=60_000)  # 1,000 output tokens/s, bucket 500
    first = await rl.reserve(10, 4096)
    assert first.output_tokens == 4096
    rl.settle(first, Usage(input_tokens=10, output_tokens=100))
    start = clock.now
    for _ in range(20):
        reservation = await rl.reserve(10, 4096)
        rl.settle(reservation, Usage(input_tokens=10, output_tokens=100))
    # 20 answers of 100 tokens fit in about 2 s; reserving 4,096 each would take 80 s.
    assert clock.now - start < 5.0
    assert rl.levels()["otpm"] > -500  # and the estimate never ran far behind the truth


# --- the batch job follows the runtime ----------------------------------------------------


def test_batch_in_flight_follows_the_runtime_capacity_bounded_by_concurrency():
    reported: list[int | None] = [None]
    config = BatchConfig(job_id="j", capacity=lambda: reported[0])
    assert config.in_flight_limit() == UNKNOWN_IN_FLIGHT  # before the runtime knows
    reported[0] = 1000
    assert config.in_flight_limit() == 1000 + SPARE
    assert config.window() == 4 * (1000 + SPARE)
    assert BatchConfig(job_id="j", concurrency=64, capacity=lambda: 1000).in_flight_limit() == 64
    assert BatchConfig(job_id="j", concurrency=12).in_flight_limit() == 12
    reported[0] = 40  # a small account: the floor once the runtime has reported
    assert config.in_flight_limit() == MIN_IN_FLIGHT


def test_open_files_limit_is_raised_not_lowered():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ensure_open_files(16) >= soft
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= soft
