"""When a stream's headers leave the emulator: before its first token, after the delay the real
APIs' recorded streams took (``llm.emulator.engine_timing.STREAM_HEADERS``), recomputed here
from ``../shared/replay-corpus`` (skipped when it is absent)."""

from __future__ import annotations

import asyncio
import math
import statistics
import time

import httpx2
import pytest

from llm.emulator.engine_timing import STREAM_HEADERS, stream_headers_s
from llm.emulator.server import EmulatorConfig
from tests.conftest import SENTINEL_KEY
from tests.dates import emulator_on
from tests.replay_support import CORPUS, all_exchanges
from tests.test_emulator_engine import KEY, Clock, make_engine, req

#: Which recorded header times how long a provider's server took before its headers left.
_TIMING_HEADER = {"anthropic": "x-envoy-upstream-service-time", "openai": "openai-processing-ms"}


def _recorded_header_ms(provider: str) -> list[float]:
    """Header times of the corpus's streamed generations of ``provider``."""
    times = []
    for ex in all_exchanges():
        path = ex.path
        generation = (
            ex.host == "api.anthropic.com" and path == "/v1/messages"
            if provider == "anthropic"
            else path.endswith(("/chat/completions", "/responses"))
        )
        value = ex.headers.get(_TIMING_HEADER[provider])
        streamed = "event-stream" in ex.headers.get("content-type", "")
        if generation and streamed and ex.status == 200 and value:
            times.append(float(value))
    return times


@pytest.mark.skipif(CORPUS is None, reason="needs ../shared/replay-corpus")
@pytest.mark.parametrize("provider", sorted(STREAM_HEADERS))
def test_stream_header_delays_are_the_ones_the_real_apis_recorded(provider):
    times = _recorded_header_ms(provider)
    assert len(times) >= 20
    median_ms, sigma = STREAM_HEADERS[provider]
    assert statistics.median(times) == pytest.approx(median_ms, rel=0.05)
    assert statistics.pstdev([math.log(t) for t in times]) == pytest.approx(sigma, abs=0.1)


def test_stream_headers_come_at_the_recorded_delay_never_after_the_first_token():
    draws = [stream_headers_s("openai", "recorded", 60.0, 7, f"r{i}", 1) for i in range(4000)]
    assert statistics.median(draws) == pytest.approx(0.36, rel=0.05)
    capped = [stream_headers_s("anthropic", "recorded", 0.5, 7, f"r{i}", 1) for i in range(400)]
    assert max(capped) == 0.5 and min(capped) < 0.5  # never later than the first token
    # Deterministic per request and attempt.
    assert stream_headers_s("openai", "recorded", 9.0, 7, "r1", 1) == draws[1]
    assert stream_headers_s("openai", "recorded", 9.0, 7, "r1", 2) != draws[1]


def test_gemini_and_first_token_mode_send_headers_with_the_first_token():
    assert stream_headers_s("google", "recorded", 4.0, 7, "r1", 1) == 4.0
    assert stream_headers_s("anthropic", "first-token", 4.0, 7, "r1", 1) == 4.0
    assert stream_headers_s("anthropic", "recorded", 0.0, 7, "r1", 1) == 0.0
    with pytest.raises(ValueError):
        stream_headers_s("anthropic", "early", 4.0, 7, "r1", 1)
    with pytest.raises(ValueError):
        EmulatorConfig(stream_headers="early")


def test_the_engine_plans_stream_headers_within_the_time_to_first_token():
    engine = make_engine(Clock(), latency_ms=4000, latency_dist="lognormal", seed=3)
    outcomes = [engine.prepare(req(f"q{i}"), KEY) for i in range(200)]
    assert all(0 < o.headers_s <= o.ttft_s for o in outcomes)
    assert statistics.median(o.headers_s for o in outcomes) < 1.5  # median 0.94 s, capped
    first_token = make_engine(Clock(), latency_ms=4000, stream_headers="first-token")
    assert first_token.prepare(req("q"), KEY).headers_s == 4.0


async def _time_to_headers_and_body(client: httpx2.AsyncClient, url: str, i: int) -> tuple:
    body = {
        "model": "gpt-5.5",
        "stream": True,
        "max_completion_tokens": 200,
        "reasoning_effort": "low",
        "messages": [{"role": "user", "content": f"Say hi {i}"}],
    }
    began = time.monotonic()
    async with client.stream("POST", url, json=body) as response:
        headers_at = time.monotonic() - began
        limit = response.headers.get("x-ratelimit-limit-requests")
        first = None
        async for _ in response.aiter_bytes():
            first = first or time.monotonic() - began
    return headers_at, first, limit


async def test_a_streams_rate_limit_headers_arrive_before_its_first_token():
    async with emulator_on(EmulatorConfig(latency_ms=1500, rpm=600)) as emu:
        auth = {"authorization": f"Bearer {SENTINEL_KEY}"}
        async with httpx2.AsyncClient(headers=auth, timeout=30) as client:
            url = emu.base_url + "/v1/chat/completions"
            timings = await asyncio.gather(
                *(_time_to_headers_and_body(client, url, i) for i in range(6))
            )
    assert all(limit == "600" for _, _, limit in timings)
    assert all(first >= 1.4 for _, first, _ in timings)  # the first token after 1.5 s
    assert all(headers_at <= first for headers_at, first, _ in timings)
    assert min(headers_at for headers_at, _, _ in timings) < 1.0  # OpenAI's median is 0.36 s
