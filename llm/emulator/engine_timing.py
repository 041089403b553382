"""When things happen in the emulator: latency draws and the admission timeline.

Latency. ``latency_dist="fixed"`` answers every request after ``latency_ms``;
``"lognormal"`` draws a heavy-tailed time to first token whose **median** is ``latency_ms``
and whose log has standard deviation ``latency_sigma`` (σ 0.6 around a 4 s median gives a
p99 near 16 s, like real generations). The draw is a pure function of the seed, the request
and its attempt number, so a run is reproducible whatever order requests arrive in.

Stream headers. A whole answer's headers leave with its body; a stream's leave before its
first token, as the real APIs do: with ``stream_headers="recorded"`` (the default) after a
draw from what the replay corpus (``../shared/replay-corpus``) recorded for the provider's
streams (:data:`STREAM_HEADERS`), never later than the first token; with
``"first-token"`` together with the first token. The rate-limit headers ride on them, so
this is when a streaming client can first learn the account's limits.

Timeline. :class:`Timeline` records when requests were admitted and when they were refused
with a 429, and how many admitted calls were in flight at once, so a benchmark can measure
the share of an account's rate a client used (admissions over its busy window) and the
429s after its first second, from the server's side rather than the client's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from llm.emulator.engine_answers import stable_hash

LATENCY_DISTS = ("fixed", "lognormal")
_UNIT = NormalDist()
#: Timestamps kept per series (a bench run is well below this).
_MAX_EVENTS = 1_000_000


#: When a stream's headers leave, by provider: median (ms) and standard deviation of the log
#: of the time the replay corpus's streams took to their headers. Anthropic's
#: ``x-envoy-upstream-service-time``: 23 streams, median 943 ms, σ 0.77; OpenAI's
#: ``openai-processing-ms``: 28 streams, median 357 ms, σ 0.95 (221 whole answers: median
#: 1,432 ms, p90 12.6 s). Gemini's recordings do not say: its headers come with the first
#: token (it sends no rate-limit headers anyway). ``tests/test_emulator_stream_headers.py``
#: recomputes these from the corpus.
STREAM_HEADERS: dict[str, tuple[float, float]] = {
    "anthropic": (940.0, 0.8),
    "openai": (360.0, 0.95),
}
STREAM_HEADER_MODES = ("recorded", "first-token")


def latency_s(
    median_ms: float,
    dist: str,
    sigma: float,
    seed: int,
    request_key: str,
    attempt: int,
    salt: str = "latency",
) -> float:
    """Seconds before the first token of one request (deterministic)."""
    if median_ms <= 0:
        return 0.0
    if dist == "fixed" or sigma <= 0:
        return median_ms / 1000
    if dist != "lognormal":
        raise ValueError(f"unknown latency distribution {dist!r}; use one of {LATENCY_DISTS}")
    draw = stable_hash(seed, request_key, attempt, salt) / 2**64
    z = _UNIT.inv_cdf(min(max(draw, 1e-12), 1 - 1e-12))
    return median_ms / 1000 * math.exp(sigma * z)


def stream_headers_s(
    provider: str, mode: str, ttft_s: float, seed: int, request_key: str, attempt: int
) -> float:
    """Seconds before a stream's headers leave (at most ``ttft_s``; deterministic)."""
    if mode not in STREAM_HEADER_MODES:
        raise ValueError(f"unknown stream_headers {mode!r}; use one of {STREAM_HEADER_MODES}")
    recorded = STREAM_HEADERS.get(provider)
    if mode == "first-token" or recorded is None or ttft_s <= 0:
        return ttft_s
    median_ms, sigma = recorded
    draw = latency_s(median_ms, "lognormal", sigma, seed, request_key, attempt, salt="headers")
    return min(ttft_s, draw)


#: Seconds of start-up :meth:`Timeline.summary`'s ``steady_share`` leaves out.
STEADY_AFTER_S = 3.0


@dataclass
class Timeline:
    """Admissions, 429s and concurrency of one emulator, on the engine's clock."""

    first_request: float | None = None
    admitted: list[float] = field(default_factory=list)
    throttled: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def request(self, now: float) -> None:
        if self.first_request is None:
            self.first_request = now

    def admit(self, now: float) -> None:
        if len(self.admitted) < _MAX_EVENTS:
            self.admitted.append(now)

    def throttle(self, now: float) -> None:
        if len(self.throttled) < _MAX_EVENTS:
            self.throttled.append(now)

    def started(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def summary(self, rpm: int | None = None, after_s: float = 1.0) -> dict[str, Any]:
        """Counts, the busy window and (given the enforced ``rpm``) the share of it used.

        The busy window runs from the first request to the last admission. The share is
        ``admissions / (rpm / 60 × window + one second's burst)``: 1.0 is every request the
        account would admit in that window. ``steady_share`` leaves out the start-up (the
        first :data:`STEADY_AFTER_S` seconds): admissions after it over ``rpm / 60`` times the
        rest of the window (None when that rest is shorter than the start-up itself).
        """
        start = self.first_request
        out: dict[str, Any] = {
            "admitted": len(self.admitted),
            "throttled": len(self.throttled),
            "throttled_after_first_s": 0,
            "busy_s": 0.0,
            "admitted_per_s": None,
            "share_of_rate": None,
            "steady_share": None,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
        }
        if start is None or not self.admitted:
            return out
        busy = max(self.admitted[-1] - start, 0.0)
        out["busy_s"] = round(busy, 3)
        out["throttled_after_first_s"] = sum(1 for t in self.throttled if t - start > after_s)
        if busy > 0:
            out["admitted_per_s"] = round(len(self.admitted) / busy, 3)
        if rpm:
            budget = rpm / 60 * busy + max(1.0, rpm / 60)
            out["share_of_rate"] = round(len(self.admitted) / budget, 4)
            rest = busy - STEADY_AFTER_S
            if rest >= STEADY_AFTER_S:
                later = sum(1 for t in self.admitted if t - start > STEADY_AFTER_S)
                out["steady_share"] = round(later / (rpm / 60 * rest), 4)
        return out

    def per_second(self, bin_s: float = 1.0) -> list[int]:
        """Admissions in each ``bin_s`` seconds (one by default) after the first request."""
        if self.first_request is None:
            return []
        counts: list[int] = []
        for moment in self.admitted:
            index = int((moment - self.first_request) / bin_s)
            counts.extend([0] * (index + 1 - len(counts)))
            counts[index] += 1
        return counts


__all__ = [
    "LATENCY_DISTS",
    "STREAM_HEADERS",
    "STREAM_HEADER_MODES",
    "Timeline",
    "latency_s",
    "stream_headers_s",
]
