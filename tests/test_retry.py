"""Tests for llm.retry: retryable classes, backoff with and without jitter, the loop, parsers."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from llm.exceptions import (
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    LLMTimeoutError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
    StructuredOutputError,
)
from llm.retry import RetryConfig, RetryPolicy, parse_google_retry_delay, parse_retry_after


class SleepRecorder:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def policy(**config) -> tuple[RetryPolicy, SleepRecorder]:
    sleep = SleepRecorder()
    cfg = RetryConfig(**{"jitter": False, **config})
    return RetryPolicy(cfg, sleep=sleep, rand=lambda: 0.0), sleep


# --- config -------------------------------------------------------------------------------


def test_config_defaults_and_frozen():
    cfg = RetryConfig()
    assert (cfg.max_retries, cfg.initial_delay, cfg.max_delay) == (3, 1.0, 60.0)
    assert (cfg.exponential_base, cfg.jitter) == (2.0, True)
    with pytest.raises(ValidationError):
        cfg.max_retries = 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_delay": -0.1},
        {"max_delay": -1.0, "initial_delay": 0.0},
        {"initial_delay": 10.0, "max_delay": 5.0},
    ],
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValidationError):
        RetryConfig(**kwargs)


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("slow down"),
        ProviderOverloadedError("529"),
        ProviderError("500", status=500),
        LLMTimeoutError("timeout"),
        ProviderConnectionError("reset"),
        CircuitOpenError("open", retry_after_s=3.0),
    ],
)
def test_transient_errors_are_retryable(error):
    assert RetryPolicy().is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("quota", quota_exhausted=True),
        AuthenticationError("401"),
        InvalidRequestError("400"),
        StructuredOutputError("bad json", raw_text="{"),
        ContextLengthError("too long"),
        ModelNotFoundError("nope"),
        ConfigurationError("no key"),
        BudgetExceededError("cap"),
        ValueError("unknown"),
        RuntimeError("unknown"),
    ],
)
def test_permanent_and_unknown_errors_are_not_retryable(error):
    assert not RetryPolicy().is_retryable(error)


def test_retry_after_beyond_hard_cap_is_not_retryable():
    pol = RetryPolicy(RetryConfig(max_retry_after=600.0))
    assert pol.is_retryable(RateLimitError("x", retry_after_s=600.0))
    assert not pol.is_retryable(RateLimitError("x", retry_after_s=601.0))


# --- delays -------------------------------------------------------------------------------


def test_delays_without_jitter_grow_exponentially_and_cap():
    pol, _ = policy(initial_delay=1.0, exponential_base=2.0, max_delay=10.0)
    assert [pol.delay_for(n, ProviderError("x")) for n in range(1, 7)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]


def test_delay_with_huge_attempt_does_not_overflow():
    pol, _ = policy(max_delay=60.0)
    assert pol.delay_for(5000, ProviderError("x")) == 60.0


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 2.0), (0.5, 3.0), (1.0, 4.0)])
def test_jitter_draws_between_half_and_full_backoff(rand, expected):
    pol = RetryPolicy(RetryConfig(initial_delay=1.0, jitter=True), rand=lambda: rand)
    assert pol.delay_for(3, ProviderError("x")) == pytest.approx(expected)


def test_retry_after_is_a_floor_above_backoff_and_max_delay():
    pol, _ = policy(initial_delay=1.0, max_delay=5.0)
    assert pol.delay_for(1, RateLimitError("x", retry_after_s=30.0)) == 30.0
    assert pol.delay_for(1, ProviderOverloadedError("x", retry_after_s=0.5)) == 1.0
    assert pol.delay_for(4, CircuitOpenError("x", retry_after_s=2.0)) == 5.0


def test_retry_after_not_shortened_by_jitter():
    pol = RetryPolicy(RetryConfig(initial_delay=1.0), rand=lambda: 0.0)
    assert pol.delay_for(1, RateLimitError("x", retry_after_s=0.9)) == 0.9


# --- the loop -----------------------------------------------------------------------------


async def test_run_returns_value_and_attempt_count_after_transient_failures():
    pol, sleep = policy(initial_delay=1.0, max_retries=3)
    seen: list[int] = []

    async def call(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 3:
            raise ProviderOverloadedError("busy")
        return "done"

    assert await pol.run(call) == ("done", 3)
    assert seen == [1, 2, 3]
    assert sleep.delays == [1.0, 2.0]


async def test_run_raises_last_error_with_attempts_after_exhausting_retries():
    pol, sleep = policy(max_retries=2)
    errors = [ProviderError(f"fail {n}") for n in range(3)]

    async def call(attempt: int) -> None:
        raise errors[attempt - 1]

    with pytest.raises(ProviderError) as info:
        await pol.run(call)
    assert info.value is errors[2]
    assert info.value.attempts == 3
    assert len(sleep.delays) == 2


async def test_non_retryable_error_raised_after_one_attempt():
    pol, sleep = policy()
    calls = 0

    async def call(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("401")

    with pytest.raises(AuthenticationError) as info:
        await pol.run(call)
    assert calls == 1
    assert info.value.attempts == 1
    assert sleep.delays == []


async def test_quota_exhausted_rate_limit_not_retried():
    pol, sleep = policy()

    async def call(attempt: int) -> None:
        raise RateLimitError("insufficient_quota", quota_exhausted=True)

    with pytest.raises(RateLimitError):
        await pol.run(call)
    assert sleep.delays == []


async def test_run_sleeps_the_servers_retry_after():
    pol, sleep = policy(initial_delay=1.0)

    async def call(attempt: int) -> str:
        if attempt == 1:
            raise RateLimitError("429", retry_after_s=33.0)
        return "ok"

    assert await pol.run(call) == ("ok", 2)
    assert sleep.delays == [33.0]


async def test_on_retry_callback_sees_attempt_error_and_delay():
    events = []
    sleep = SleepRecorder()
    pol = RetryPolicy(
        RetryConfig(jitter=False),
        sleep=sleep,
        on_retry=lambda attempt, error, delay: events.append((attempt, type(error), delay)),
    )

    async def call(attempt: int) -> int:
        if attempt <= 2:
            raise LLMTimeoutError("t")
        return attempt

    assert await pol.run(call) == (3, 3)
    assert events == [(1, LLMTimeoutError, 1.0), (2, LLMTimeoutError, 2.0)]


async def test_zero_retries_means_one_attempt():
    pol, sleep = policy(max_retries=0)

    async def call(attempt: int) -> None:
        raise ProviderError("500")

    with pytest.raises(ProviderError) as info:
        await pol.run(call)
    assert info.value.attempts == 1
    assert sleep.delays == []


def test_attempts_survive_pickling():
    error = ProviderError("x")
    error.attempts = 4
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, ProviderError)
    assert clone.attempts == 4


# --- header parsers -----------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250.5", "retry-after": "9"}, 0.2505),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"retry-after": "Sun, 01 Mar 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Sun, 01 Mar 2026 11:59:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, now=NOW) == expected


GOOGLE_BODY = {
    "error": {
        "code": 429,
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"},
        ],
    }
}


def test_parse_google_retry_delay_from_body_error_and_details():
    assert parse_google_retry_delay(GOOGLE_BODY) == 33.0
    assert parse_google_retry_delay(GOOGLE_BODY["error"]) == 33.0
    assert parse_google_retry_delay(GOOGLE_BODY["error"]["details"]) == 33.0


@pytest.mark.parametrize(
    ("delay", "expected"),
    [("1.5s", 1.5), ("0s", 0.0), ({"seconds": 2, "nanos": 500_000_000}, 2.5), ("33", None)],
)
def test_parse_google_retry_delay_formats(delay, expected):
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
    assert parse_google_retry_delay(details) == expected


def test_parse_google_retry_delay_absent():
    assert parse_google_retry_delay([{"@type": "type.googleapis.com/google.rpc.Help"}]) is None
    assert parse_google_retry_delay(None) is None
    assert parse_google_retry_delay({"error": {"code": 500}}) is None


# --- run_stream -------------------------------------------------------------------------


async def _collect(stream):
    return [item async for item in stream]


async def test_run_stream_retries_only_until_the_first_item():
    retry, sleep = policy(max_retries=3, initial_delay=1.0)
    opened: list[int] = []

    async def attempt(number: int):
        opened.append(number)
        if number == 1:
            raise ProviderConnectionError("reset before any text")
        yield f"chunk {number}"
        raise ProviderConnectionError("cut after text")

    with pytest.raises(ProviderConnectionError, match="cut after text") as caught:
        await _collect(retry.run_stream(attempt))
    assert opened == [1, 2] and sleep.delays == [1.0]  # one retry, then no more
    assert caught.value.attempts == 2


async def test_run_stream_gives_up_on_unretryable_and_after_the_last_attempt():
    retry, sleep = policy(max_retries=2, initial_delay=1.0)
    seen: list[tuple[int, float]] = []

    async def always_overloaded(number: int):
        raise ProviderOverloadedError("busy")
        yield  # an async generator

    with pytest.raises(ProviderOverloadedError) as caught:
        await _collect(
            retry.run_stream(always_overloaded, on_retry=lambda n, e, d: seen.append((n, d)))
        )
    assert caught.value.attempts == 3 and seen == [(1, 1.0), (2, 2.0)]

    async def bad_request(number: int):
        raise InvalidRequestError("no")
        yield

    with pytest.raises(InvalidRequestError) as caught:
        await _collect(retry.run_stream(bad_request))
    assert caught.value.attempts == 1 and sleep.delays == [1.0, 2.0]


async def test_run_stream_passes_a_whole_stream_through():
    retry, sleep = policy()

    async def attempt(number: int):
        for text in ("a", "b"):
            yield text

    assert await _collect(retry.run_stream(attempt)) == ["a", "b"] and sleep.delays == []
