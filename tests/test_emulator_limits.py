"""The emulator's rate limits, rate-limit headers, heavy-tailed latency and admission timeline.

Engine tests inject a clock (deterministic); the end-to-end tests go through the official
SDKs against the real server, with limits low enough that one request fills the window.
"""

from __future__ import annotations

import asyncio
import math
import statistics

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors, types

from llm.emulator.__main__ import parse_args
from llm.emulator.engine_limits import DEFAULT_TIERS, tier_defaults
from llm.emulator.engine_timing import Timeline, latency_s
from llm.emulator.protocol import EmuError
from llm.emulator.server import Emulator, EmulatorConfig
from tests.conftest import SENTINEL_KEY
from tests.dates import emulator_on
from tests.test_emulator_engine import KEY, Clock, make_engine, req

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def _admitted(engine, text: str, key: str = KEY) -> bool:
    try:
        engine.prepare(req(text), key)
    except EmuError as err:
        assert err.kind == "rate_limit"
        return False
    return True


# ------------------------------------------------------------- short windows
def test_sixty_rpm_behaves_like_one_request_per_second():
    clock = Clock()
    engine = make_engine(clock, rpm=60)
    assert _admitted(engine, "a")
    with pytest.raises(EmuError) as exc:
        engine.prepare(req("b"), KEY)
    assert exc.value.retry_after_s == pytest.approx(1.0)
    assert exc.value.limits["requests_remaining"] == 59  # the headers report the minute
    clock.now += 0.5
    assert not _admitted(engine, "b")
    clock.now += 0.5
    assert _admitted(engine, "b")


def test_a_full_minute_never_leaves_as_one_burst_even_after_idle():
    clock = Clock()
    engine = make_engine(clock, rpm=3000)
    clock.now += 600  # a long idle spell: the minute bucket is full
    burst = sum(_admitted(engine, f"q{i}") for i in range(200))
    assert burst == 50  # one second of the rate, not 3,000
    limits = engine.prepare(req("probe"), "other-key").result.limits
    assert limits["requests_remaining"] == 2999  # another key: its own account
    clock.now += 0.105
    assert sum(_admitted(engine, f"r{i}") for i in range(20)) == 5  # refill: 50/s


def test_sustained_sending_gets_exactly_the_rate():
    clock = Clock()
    engine = make_engine(clock, rpm=600)
    admitted = 0
    for step in range(1000):  # one attempt every 10 ms for 10 s
        admitted += _admitted(engine, f"q{step}")
        clock.now += 0.01
    assert 108 <= admitted <= 111  # 10 s x 10/s + a burst of 10
    summary = engine.stats.timeline.summary(600)
    assert summary["admitted"] == admitted
    assert summary["throttled"] == 1000 - admitted
    assert summary["share_of_rate"] == pytest.approx(1.0, abs=0.02)


def test_input_tokens_are_limited_over_a_second_too():
    clock = Clock()
    engine = make_engine(clock, itpm=60_000)  # 1,000 tokens a second
    long = "word " * 700
    assert _admitted(engine, long)
    with pytest.raises(EmuError) as exc:
        engine.prepare(req(long + "again"), KEY)
    assert "input" in exc.value.message.lower() or exc.value.kind == "rate_limit"
    assert 0.3 < exc.value.retry_after_s <= 1.0
    clock.now += 1.0
    assert _admitted(engine, long + "again")


def test_burst_s_sixty_restores_a_whole_minute_of_burst():
    engine = make_engine(Clock(), rpm=120, burst_s=60)
    assert sum(_admitted(engine, f"q{i}") for i in range(150)) == 120


# -------------------------------------------------------------------- latency
def test_lognormal_latency_is_heavy_tailed_around_the_median_and_reproducible():
    draws = [latency_s(4000, "lognormal", 0.6, 7, f"key{i}", 1) for i in range(4000)]
    assert draws == [latency_s(4000, "lognormal", 0.6, 7, f"key{i}", 1) for i in range(4000)]
    assert statistics.median(draws) == pytest.approx(4.0, rel=0.05)
    p99 = sorted(draws)[int(0.99 * len(draws))]
    assert p99 == pytest.approx(4.0 * math.exp(0.6 * 2.326), rel=0.15)  # about 16 s
    assert latency_s(4000, "lognormal", 0.6, 8, "key1", 1) != draws[1]  # the seed matters
    assert latency_s(4000, "lognormal", 0.6, 7, "key1", 2) != draws[1]  # so does the attempt
    assert latency_s(4000, "fixed", 0.6, 7, "key1", 1) == 4.0
    assert latency_s(0, "lognormal", 0.6, 7, "key1", 1) == 0.0


def test_engine_draws_latency_per_request_and_markers_still_win():
    engine = make_engine(latency_ms=4000, latency_dist="lognormal", latency_sigma=0.6, seed=3)
    first = engine.prepare(req("alpha"), KEY).ttft_s
    again = make_engine(latency_ms=4000, latency_dist="lognormal", latency_sigma=0.6, seed=3)
    assert again.prepare(req("alpha"), KEY).ttft_s == first
    assert engine.prepare(req("beta"), KEY).ttft_s != first
    assert engine.prepare(req("gamma [[emu:latency_ms=250]]"), KEY).ttft_s == 0.25


def test_config_and_cli_validate_the_new_options():
    with pytest.raises(ValueError):
        EmulatorConfig(latency_dist="pareto")
    with pytest.raises(ValueError):
        EmulatorConfig(burst_s=0)
    config = parse_args(
        ["--latency-ms", "4000", "--latency-dist", "lognormal", "--latency-sigma", "0.6"]
    )
    assert (config.latency_ms, config.latency_dist, config.latency_sigma) == (
        4000,
        "lognormal",
        0.6,
    )
    assert parse_args(["--rpm", "3000", "--burst-s", "2"]).burst_s == 2.0
    with pytest.raises(SystemExit):
        parse_args(["--latency-dist", "uniform"])


# ------------------------------------------------------------------- timeline
def test_timeline_summary_counts_429s_after_the_first_second():
    timeline = Timeline()
    timeline.request(10.0)
    for moment in (10.0, 10.5, 11.0, 12.0):
        timeline.admit(moment)
    for moment in (10.2, 10.9, 11.5, 13.0):
        timeline.throttle(moment)
    summary = timeline.summary(rpm=120)  # 2/s: 2 x 2 s + a burst of 2 = 6
    assert (summary["admitted"], summary["throttled"]) == (4, 4)
    assert summary["throttled_after_first_s"] == 2
    assert summary["busy_s"] == 2.0 and summary["share_of_rate"] == pytest.approx(4 / 6, 1e-3)
    assert timeline.per_second() == [2, 1, 1]
    assert timeline.per_second(0.5) == [1, 1, 1, 0, 1]
    assert summary["steady_share"] is None  # 2 s: no steady part after a 3 s start-up
    steady = Timeline()
    steady.request(0.0)
    for index in range(100):  # 10 per second for 10 s, the first 3 s at half that
        moment = index * 0.1
        if moment >= 3.0 or index % 2 == 0:
            steady.admit(moment)
    assert steady.summary(rpm=600)["steady_share"] == pytest.approx(69 / (10 * 6.9), 1e-3)
    assert Timeline().summary(60)["share_of_rate"] is None


# ------------------------------------------------------------ through the SDKs
async def _stats(emu: Emulator, per_second: bool = False) -> dict:
    query = "?per_second=1" if per_second else ""
    async with httpx2.AsyncClient() as http:
        return (await http.get(emu.base_url + "/_emulator/stats" + query)).json()


async def test_anthropic_headers_on_every_answer_without_configured_limits():
    async with emulator_on(EmulatorConfig()) as emu:
        async with anthropic.AsyncAnthropic(
            base_url=emu.base_url, api_key=SENTINEL_KEY, max_retries=0
        ) as client:
            messages = [{"role": "user", "content": "hi"}]
            first = await client.messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=50, messages=messages
            )
            async with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=50, messages=messages
            ) as stream:
                streamed = stream.response.headers
                await stream.get_final_message()
    for headers in (first.headers, streamed):
        for limit in ("requests", "tokens", "input-tokens", "output-tokens"):
            for part in ("limit", "remaining", "reset"):
                assert f"anthropic-ratelimit-{limit}-{part}" in headers
        assert headers["anthropic-ratelimit-requests-limit"] == "4000"
        assert headers["anthropic-ratelimit-output-tokens-limit"] == "400000"
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "3999"
    assert streamed["anthropic-ratelimit-requests-remaining"] == "3998"


async def test_openai_headers_on_every_answer_and_short_window_429():
    async with emulator_on(EmulatorConfig(rpm=60)) as emu:
        async with openai.AsyncOpenAI(
            base_url=emu.base_url + "/v1", api_key=SENTINEL_KEY, max_retries=0
        ) as client:
            messages = [{"role": "user", "content": "hi"}]
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=messages
            )
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="gpt-4o", messages=messages)
        stats = await _stats(emu, per_second=True)
    headers = raw.headers
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    reset = headers["x-ratelimit-reset-requests"]  # Go duration: one request refills
    assert reset == "1s" or (reset.endswith("ms") and 900 <= int(reset[:-2]) < 1000)
    assert headers["x-ratelimit-limit-tokens"] == "2000000"  # the default tier's TPM
    assert "x-ratelimit-remaining-tokens" in headers and "x-ratelimit-reset-tokens" in headers
    refused = caught.value.response.headers
    assert 0 < float(refused["retry-after-ms"]) <= 1000 and refused["retry-after"] == "1"
    assert refused["x-ratelimit-remaining-requests"] == "59"  # the minute still has room
    timeline = stats["timeline"]
    assert (timeline["admitted"], timeline["throttled"]) == (1, 1)
    assert timeline["max_in_flight"] == 1 and timeline["in_flight"] == 0
    assert timeline["per_second"] == [1]


async def test_gemini_sends_no_limit_headers_but_its_429_names_the_quota():
    async with emulator_on(EmulatorConfig(rpm=60)) as emu:
        client = genai.Client(
            api_key=SENTINEL_KEY, http_options=types.HttpOptions(base_url=emu.base_url)
        )
        ok = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        with pytest.raises(errors.ClientError) as info:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="again")
    headers = {k.lower() for k in (ok.sdk_http_response.headers or {})}
    assert not any("ratelimit" in name for name in headers)
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in info.value.details["error"]["details"]}
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaDimensions"] == {"location": "global", "model": "gemini-2.5-flash"}
    assert violation["quotaValue"] == "60"
    assert details["RetryInfo"]["retryDelay"] == "1s"


async def test_max_in_flight_counts_concurrent_admitted_calls():
    async with emulator_on(EmulatorConfig(latency_ms=300)) as emu:
        async with anthropic.AsyncAnthropic(
            base_url=emu.base_url, api_key=SENTINEL_KEY, max_retries=0
        ) as client:
            await asyncio.gather(
                *(
                    client.messages.create(
                        model="claude-sonnet-4-5",
                        max_tokens=20,
                        messages=[{"role": "user", "content": f"q{i}"}],
                    )
                    for i in range(6)
                )
            )
        timeline = (await _stats(emu))["timeline"]
    assert timeline["max_in_flight"] == 6 and timeline["in_flight"] == 0
    assert timeline["admitted"] == 6 and timeline["share_of_rate"] is None  # nothing enforced


# ---------------------------------------------------------- output estimates
def test_anthropic_counts_max_tokens_at_admission_and_corrects_at_the_end():
    clock = Clock()
    engine = make_engine(clock, otpm=6000)  # 100 output tokens a second
    first = engine.prepare(req("a [[emu:tokens=10]]", max_tokens=80), KEY).result
    # 80 reserved at admission, then corrected to the 10 produced: 6000 - 10 remain.
    assert first.limits["output_tokens_remaining"] == 5990
    engine.prepare(req("b [[emu:tokens=10]]", max_tokens=80), KEY)  # the burst holds 100
    with pytest.raises(EmuError) as exc:  # 100 - 20 = 80 left... but not 90
        engine.prepare(req("c [[emu:tokens=10]]", max_tokens=90), KEY)
    assert exc.value.retry_after_s == pytest.approx(0.1)
    clock.now += 0.1
    assert _admitted(engine, "c")
    openai_engine = make_engine(clock, otpm=6000)  # OpenAI: output counted after the answer
    for index in range(3):
        openai_engine.prepare(
            req(f"o{index} [[emu:tokens=10]]", model="gpt-test", provider="openai", max_tokens=90),
            KEY,
        )


def test_a_larger_configured_rpm_reports_token_limits_of_a_larger_tier():
    # A 10,000 RPM Anthropic account is a larger tier than Tier 4's 4,000 RPM: its reported
    # token limits keep Tier 4's tokens per request instead of binding long before its RPM.
    assert tier_defaults("anthropic", 10_000) == {
        "requests": 10_000,
        "input_tokens": 5_000_000,
        "output_tokens": 1_000_000,
    }
    assert tier_defaults("anthropic", 3_000) == DEFAULT_TIERS["anthropic"]  # never lower
    assert tier_defaults("openai", None) == DEFAULT_TIERS["openai"]
    assert tier_defaults("google", 10_000) is None
