"""Tests for runtime.breaker: closed → open → half-open → closed / re-open transitions."""

from __future__ import annotations

import pickle

import pytest

from llm.exceptions import (
    CircuitOpenError,
    InvalidRequestError,
    LLMTimeoutError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
)
from runtime.breaker import CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 30.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(threshold, cooldown, clock=clock, provider="anthropic"), clock


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        breaker.record_failure(ProviderOverloadedError("529"))


def test_opens_after_threshold_consecutive_failures():
    breaker, _ = make(threshold=3)
    breaker.record_failure(ProviderError("500"))
    breaker.record_failure(LLMTimeoutError("t"))
    assert breaker.state == "closed"
    breaker.check()
    breaker.record_failure(ProviderConnectionError("reset"))
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.check()


def test_success_resets_the_consecutive_count():
    breaker, _ = make(threshold=3)
    breaker.record_failure(ProviderError("500"))
    breaker.record_failure(ProviderError("500"))
    breaker.record_success()
    breaker.record_failure(ProviderError("500"))
    breaker.record_failure(ProviderError("500"))
    assert breaker.state == "closed"


@pytest.mark.parametrize("error", [InvalidRequestError("400"), RateLimitError("429"), ValueError()])
def test_other_errors_do_not_count(error):
    breaker, _ = make(threshold=1)
    breaker.record_failure(error)
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0


def test_open_error_carries_remaining_cooldown_and_pickles():
    breaker, clock = make(cooldown=30.0)
    trip(breaker)
    clock.now += 12.0
    with pytest.raises(CircuitOpenError) as info:
        breaker.check()
    assert info.value.retry_after_s == pytest.approx(18.0)
    assert info.value.provider == "anthropic"
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.retry_after_s == pytest.approx(18.0)


def test_half_open_lets_exactly_one_trial_through():
    breaker, clock = make(cooldown=30.0)
    trip(breaker)
    clock.now += 30.0
    assert breaker.state == "half_open"
    breaker.check()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.check()


def test_trial_success_closes():
    breaker, clock = make()
    trip(breaker)
    clock.now += 30.0
    breaker.check()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.check()
    breaker.check()


def test_trial_failure_reopens_for_a_full_cooldown():
    breaker, clock = make(threshold=3, cooldown=30.0)
    trip(breaker)
    clock.now += 30.0
    breaker.check()
    breaker.record_failure(ProviderOverloadedError("529"))
    assert breaker.state == "open"
    assert breaker.times_opened == 2
    clock.now += 29.0
    assert breaker.state == "open"
    clock.now += 1.0
    assert breaker.state == "half_open"


def test_lost_trial_allows_another_after_cooldown():
    breaker, clock = make(cooldown=30.0)
    trip(breaker)
    clock.now += 30.0
    breaker.check()  # trial caller vanishes without reporting
    clock.now += 30.0
    breaker.check()  # a new trial is allowed


def test_neutral_outcome_frees_the_trial_slot():
    breaker, clock = make()
    trip(breaker)
    clock.now += 30.0
    breaker.check()
    breaker.record_failure(InvalidRequestError("400"))
    assert breaker.state == "half_open"
    breaker.check()  # another trial may go


def test_failures_while_open_do_not_extend_the_cooldown():
    breaker, clock = make(cooldown=30.0)
    trip(breaker)
    clock.now += 20.0
    breaker.record_failure(ProviderError("late in-flight failure"))
    clock.now += 10.0
    assert breaker.state == "half_open"


def test_invalid_parameters_rejected():
    with pytest.raises(ValueError):
        CircuitBreaker(0)
    with pytest.raises(ValueError):
        CircuitBreaker(3, -1.0)


def test_burst_of_instant_transient_faults_does_not_open_a_volume_guarded_breaker():
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, cooldown_s=30.0, clock=clock, min_calls=20)
    for _ in range(6):  # 6 of 60 requests fail at once, before any success arrives
        breaker.record_failure(ProviderError("500"))
    assert breaker.state == "closed"
    for _ in range(54):
        breaker.record_success()
    assert breaker.state == "closed"


def test_volume_guarded_breaker_still_opens_in_an_outage():
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, cooldown_s=30.0, clock=clock, min_calls=20)
    for _ in range(19):
        breaker.record_failure(ProviderOverloadedError("529"))
    assert breaker.state == "closed"
    breaker.record_failure(ProviderOverloadedError("529"))
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.check()


def test_volume_guarded_breaker_needs_mostly_failures():
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, cooldown_s=30.0, clock=clock, min_calls=20)
    for _ in range(15):
        breaker.record_success()
    for _ in range(5):  # 5 consecutive, but only 5 of the last 20 outcomes failed
        breaker.record_failure(ProviderError("500"))
    assert breaker.state == "closed"
