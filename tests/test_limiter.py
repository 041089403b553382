"""Tests for runtime.limiter (admission times under a fake clock, corrections, FIFO) and
runtime.limits_config (the account limits that configure it)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from llm.config import Settings
from llm.exceptions import ConfigurationError
from llm.providers.base import RateLimitSnapshot
from llm.types import Usage
from runtime.limiter import AccountLimits, RateLimiter
from runtime.limits_config import load_limits


class FakeClock:
    """A clock whose sleep advances time instantly (and yields to the loop once)."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)


def make(
    *, probe: bool = False, burst_s: float = 60.0, pace: float = 1.0, **limits
) -> tuple[RateLimiter, FakeClock]:
    """A limiter on a fake clock; bucket tests skip the calibration probe (tested below).

    By default a bucket holds a whole minute and refills at exactly the limit, so the
    arithmetic of admissions is easy to follow; the short-window defaults are tested in
    tests/test_limiter_realistic.py.
    """
    clock = FakeClock()
    limiter = RateLimiter(
        AccountLimits(**limits),
        clock=clock,
        sleep=clock.sleep,
        probe_timeout_s=30.0 if probe else 0.0,
        burst_s=burst_s,
        pace=pace,
    )
    return limiter, clock


def test_limits_must_be_positive():
    with pytest.raises(ValidationError):
        AccountLimits(rpm=0)
    with pytest.raises(ValidationError):
        AccountLimits(itpm=-5)


async def test_rpm_admission_times():
    limiter, _ = make(rpm=2)  # capacity 2, one request every 30 s
    times = [(await limiter.reserve(0, 0)).admitted_at for _ in range(4)]
    assert times == pytest.approx([0.0, 0.0, 30.0, 60.0])


async def test_itpm_admission_waits_for_refill():
    limiter, _ = make(itpm=600)  # refills 10 tokens/s
    first = await limiter.reserve(400, 0)
    second = await limiter.reserve(400, 0)
    assert first.admitted_at == 0.0
    assert second.admitted_at == pytest.approx(20.0)
    assert second.waited_s == pytest.approx(20.0)


async def test_otpm_counts_output_estimate():
    limiter, _ = make(otpm=120)  # 2 tokens/s
    await limiter.reserve(10_000, 100)
    second = await limiter.reserve(0, 100)
    assert second.admitted_at == pytest.approx(40.0)


async def test_tpm_counts_input_plus_output():
    limiter, _ = make(tpm=600)
    await limiter.reserve(300, 300)
    assert limiter.levels()["tpm"] == pytest.approx(0.0)
    second = await limiter.reserve(50, 50)
    assert second.admitted_at == pytest.approx(10.0)


async def test_settle_refunds_unused_estimate():
    limiter, _ = make(itpm=1000, otpm=1000)
    reservation = await limiter.reserve(400, 800)
    limiter.settle(reservation, Usage(input_tokens=400, output_tokens=100))
    assert limiter.levels() == pytest.approx({"itpm": 600.0, "otpm": 900.0})


async def test_settle_debits_extra_usage_and_delays_next_request():
    limiter, _ = make(itpm=600)
    reservation = await limiter.reserve(100, 0)
    limiter.settle(reservation, Usage(input_tokens=700))
    assert limiter.levels()["itpm"] == pytest.approx(-100.0)
    nxt = await limiter.reserve(100, 0)
    assert nxt.admitted_at == pytest.approx(20.0)  # 200 tokens at 10/s


async def test_settle_only_once():
    limiter, _ = make(itpm=1000)
    reservation = await limiter.reserve(500, 0)
    limiter.settle(reservation, Usage(input_tokens=100))
    limiter.settle(reservation, Usage(input_tokens=100))
    assert limiter.levels()["itpm"] == pytest.approx(900.0)


async def test_cache_reads_refunded_when_they_do_not_count():
    limiter, _ = make(itpm=1000, cache_reads_count=False)
    reservation = await limiter.reserve(1000, 0)
    limiter.settle(reservation, Usage(input_tokens=1000, cached_tokens=800))
    assert limiter.levels()["itpm"] == pytest.approx(800.0)


async def test_cache_reads_kept_when_they_count():
    limiter, _ = make(itpm=1000, cache_reads_count=True)
    reservation = await limiter.reserve(1000, 0)
    limiter.settle(reservation, Usage(input_tokens=1000, cached_tokens=800))
    assert limiter.levels()["itpm"] == pytest.approx(0.0)


def test_observe_lowers_but_never_raises():
    limiter, _ = make(rpm=100, itpm=1000, otpm=500)
    limiter.observe(
        RateLimitSnapshot(
            requests_remaining=40, input_tokens_remaining=300, output_tokens_remaining=499
        )
    )
    assert limiter.levels() == pytest.approx({"rpm": 40.0, "itpm": 300.0, "otpm": 499.0})
    limiter.observe(RateLimitSnapshot(requests_remaining=90, input_tokens_remaining=900))
    assert limiter.levels() == pytest.approx({"rpm": 40.0, "itpm": 300.0, "otpm": 499.0})


def test_observe_adopts_lower_provider_limit():
    limiter, _ = make(itpm=1000)
    limiter.observe(RateLimitSnapshot(input_tokens_limit=400))
    assert limiter.capacities()["itpm"] == 400.0
    assert limiter.levels()["itpm"] == 400.0
    limiter.observe(RateLimitSnapshot(input_tokens_limit=5000))
    assert limiter.capacities()["itpm"] == 400.0


async def test_observe_learns_unconfigured_limit():
    limiter, _ = make()
    limiter.observe(RateLimitSnapshot(requests_limit=10, requests_remaining=0))
    admitted = await limiter.reserve(0, 0)
    assert admitted.admitted_at == pytest.approx(6.0)  # 10 rpm refills one per 6 s


async def test_observe_maps_input_tokens_to_tpm_when_no_itpm():
    limiter, _ = make(tpm=1000)
    limiter.observe(RateLimitSnapshot(input_tokens_remaining=100))
    assert limiter.levels() == pytest.approx({"tpm": 100.0})


async def test_penalize_blocks_new_admissions_and_empties_the_buckets():
    limiter, clock = make(rpm=60, itpm=6000)  # 1 request/s, 100 tokens/s
    limiter.penalize(5.0)
    assert limiter.headroom() == 0.0
    admitted = await limiter.reserve(100, 0)
    assert admitted.admitted_at == pytest.approx(5.0)
    # Emptied at the 429, so 5 s of refill is all there is: no full-bucket burst after it.
    assert limiter.levels()["rpm"] == pytest.approx(5 * 1.0 - 1)
    assert limiter.levels()["itpm"] == pytest.approx(5 * 100.0 - 100)


async def test_penalize_never_shortens_an_existing_block():
    limiter, _ = make()
    limiter.penalize(10.0)
    limiter.penalize(2.0)
    assert (await limiter.reserve(0, 0)).admitted_at == pytest.approx(10.0)


async def test_fifo_large_request_not_starved_by_small_ones():
    limiter, _ = make(itpm=600)  # 10 tokens/s
    await limiter.reserve(600, 0)  # drain the bucket at t=0
    order: list[tuple[str, float]] = []

    async def ask(name: str, tokens: int) -> None:
        reservation = await limiter.reserve(tokens, 0)
        order.append((name, reservation.admitted_at))

    await asyncio.gather(ask("big", 600), ask("small1", 10), ask("small2", 10))
    assert [name for name, _ in order] == ["big", "small1", "small2"]
    assert [t for _, t in order] == pytest.approx([60.0, 61.0, 62.0])


async def test_oversized_request_admitted_when_bucket_full_and_repaid():
    limiter, _ = make(itpm=100)
    await limiter.reserve(50, 0)  # level 50
    big = await limiter.reserve(250, 0)  # more than capacity: waits for a full bucket
    assert big.admitted_at == pytest.approx(30.0)
    assert limiter.levels()["itpm"] == pytest.approx(-150.0)
    nxt = await limiter.reserve(10, 0)
    assert nxt.admitted_at == pytest.approx(30.0 + 160 * 0.6)


async def test_refund_during_wait_admits_head_earlier():
    limiter, clock = make(itpm=600)
    first = await limiter.reserve(600, 0)
    waiter = asyncio.create_task(limiter.reserve(300, 0))
    await asyncio.sleep(0)  # the waiter is now sleeping its first slice
    limiter.settle(first, Usage(input_tokens=0))  # refund everything
    assert (await waiter).admitted_at <= 1.0


def test_headroom_is_min_share_over_buckets():
    limiter, _ = make(rpm=10, itpm=1000)
    assert limiter.headroom() == 1.0
    limiter.observe(RateLimitSnapshot(requests_remaining=5, input_tokens_remaining=250))
    assert limiter.headroom() == pytest.approx(0.25)


def test_headroom_unlimited_is_one():
    limiter, _ = make()
    assert limiter.headroom() == 1.0


async def test_cancelled_waiter_does_not_block_the_queue():
    limiter, _ = make(rpm=1)
    await limiter.reserve(0, 0)
    blocked = asyncio.create_task(limiter.reserve(0, 0))
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert limiter.waiting == 0
    assert (await limiter.reserve(0, 0)).admitted_at == pytest.approx(60.0)


# --- runtime.limits_config (account limits that configure the limiter) ---------------------

LIMITS_TOML = """
[anthropic]
rpm = 4000
itpm = 2000000
otpm = 400000

[openai]
tpm = 800000

[[accounts]]
provider = "google"
name = "team-a"
api_key_env = "GEMINI_KEY_TEAM_A"
rpm = 100

[[accounts]]
provider = "google"
name = "team-b"
api_key_env = "GEMINI_KEY_TEAM_B"
"""


def write_limits(tmp_path, text: str = LIMITS_TOML):
    path = tmp_path / "limits.toml"
    path.write_text(text)
    return path


def test_load_limits_from_file(tmp_path):

    accounts = load_limits(path=write_limits(tmp_path), environ={})
    (anthropic,) = accounts["anthropic"]
    assert anthropic.name == "default" and anthropic.api_key_env is None
    assert (anthropic.limits.rpm, anthropic.limits.itpm, anthropic.limits.otpm) == (
        4000,
        2_000_000,
        400_000,
    )
    assert anthropic.limits.cache_reads_count is False  # Anthropic's ITPM ignores cache reads
    assert accounts["openai"][0].limits.tpm == 800_000
    assert [a.name for a in accounts["google"]] == ["team-a", "team-b"]
    assert accounts["google"][0].limits.rpm == 100
    assert accounts["google"][1].limits.rpm is None


def test_env_vars_override_file_and_work_alone(tmp_path):

    env = {"LLM_LIMITS_FILE": str(write_limits(tmp_path)), "LLM_LIMITS_ANTHROPIC_RPM": "50"}
    assert load_limits(environ=env)["anthropic"][0].limits.rpm == 50
    only_env = load_limits(environ={"LLM_LIMITS_OPENAI_ITPM": "1000"})
    assert only_env["openai"][0].limits.itpm == 1000
    assert only_env["google"][0].limits == AccountLimits()


def test_account_key_read_from_named_env_var(tmp_path):

    team_a = load_limits(path=write_limits(tmp_path), environ={})["google"][0]
    assert team_a.api_key(Settings(), environ={"GEMINI_KEY_TEAM_A": "k-a"}) == "k-a"
    assert team_a.api_key(Settings(), environ={}) is None
    assert "k-a" not in repr(team_a)


@pytest.mark.parametrize(
    "text",
    [
        "[anthropic]\nrpm = 0\n",
        "[anthropic]\nrmp = 10\n",
        "[mistral]\nrpm = 10\n",
        '[[accounts]]\nprovider = "x"\n',
        '[[accounts]]\nprovider = "openai"\nname = "a"\n[[accounts]]\nprovider = "openai"\nname = "a"\n',
        "not toml [",
    ],
)
def test_invalid_limits_file_raises_configuration_error(tmp_path, text):

    with pytest.raises(ConfigurationError):
        load_limits(path=write_limits(tmp_path, text), environ={})


def test_invalid_env_limit_raises_configuration_error():

    with pytest.raises(ConfigurationError):
        load_limits(environ={"LLM_LIMITS_GOOGLE_RPM": "lots"})


# --- calibration probe ----------------------------------------------------------------------


async def test_slow_start_before_the_first_answer_then_the_learned_pace():
    # No limit configured and no answer yet: the probe, then 4 per 0.05 s (80 per s), spaced,
    # but never more than a 2,400 RPM account admits over a one-second window: 80 in the
    # first second, then 40 per second.
    limiter, clock = make(probe=True)
    times = [(await limiter.reserve(10, 10)).admitted_at for _ in range(121)]
    assert times[:41] == pytest.approx([0.0125 * step for step in range(41)])
    assert sum(1 for t in times if t < 1.0) == 80
    for index, t in enumerate(times):
        assert index + 1 <= 40 * (1.0 + t) + 1e-6  # the 2,400 RPM account's envelope
        assert sum(1 for u in times if t - 0.05 + 1e-9 < u <= t) <= 4  # one step at most
    assert times[119:] == pytest.approx([2.0, 2.025])  # 40 per second after the first second
    # The first answer's headers arrive: the account allows 600 rpm, nothing left right now.
    limiter.observe(RateLimitSnapshot(requests_limit=600, requests_remaining=0))
    assert limiter.calibrated and limiter.known_limits() == {"rpm": 600}
    nxt = await limiter.reserve(10, 10)
    assert nxt.admitted_at == pytest.approx(times[-1] + 1 / (600 / 60 * 1.0))


async def test_slow_start_never_makes_up_lost_time_as_a_burst():
    # The probe goes out, then the loop is busy elsewhere for half a second (a driver
    # preparing thousands of calls): the slow start's steps missed meanwhile are not let
    # out at once; at most one step (4) leaves, then 4 per 0.05 s again.
    limiter, clock = make(probe=True)
    await limiter.reserve(10, 10)
    await clock.sleep(0.5)
    times = [(await limiter.reserve(10, 10)).admitted_at for _ in range(8)]
    assert times == pytest.approx([0.5 + 0.0125 * max(0, n - 3) for n in range(8)])


async def test_first_answer_headers_end_the_slow_start_at_once():
    limiter, clock = make(probe=True, rpm=600)  # configured: calibrated by the first answer too
    await limiter.reserve(10, 10)
    follower = asyncio.ensure_future(limiter.reserve(10, 10))
    await clock.sleep(0.01)  # the probe is still out; the slow start holds the follower
    assert not follower.done() and not limiter.calibrated
    # The provider says the account is nearly spent: the buckets follow before the next send.
    limiter.observe(RateLimitSnapshot(requests_limit=600, requests_remaining=0))
    await follower
    assert limiter.calibrated
    # One refill at 600 rpm after the headers (the fake sleeps of both move the clock).
    assert follower.result().admitted_at == pytest.approx(0.12, abs=0.011)


async def test_probe_settle_without_headers_releases_followers():
    limiter, clock = make(probe=True, itpm=6000)
    probe = await limiter.reserve(10, 0)
    follower = asyncio.ensure_future(limiter.reserve(10, 0))
    await clock.sleep(0.01)
    assert not follower.done()
    limiter.settle(probe, Usage(input_tokens=10))
    await follower
    assert clock.now < 0.05


async def test_a_429_ends_the_slow_start_and_lost_probes_time_out():
    limiter, clock = make(probe=True)
    await limiter.reserve(1, 1)
    limiter.penalize(0.5)  # refused at once: the account is smaller than the slow start
    assert limiter.calibrated
    assert (await limiter.reserve(1, 1)).admitted_at == pytest.approx(0.5)
    lost, clock2 = make(probe=True)
    await lost.reserve(1, 1)  # never answered
    await clock2.sleep(31.0)
    await lost.reserve(1, 1)
    assert lost.calibrated
