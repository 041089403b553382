"""The OpenAI cookbook's parallel-processor algorithm, rewritten from its description.

Reference: ``api_request_parallel_processor.py`` in the openai-cookbook, as summarised in
``peers.md`` §4. The algorithm, kept as described:

* one loop hands out requests; failed ones go to a retry queue served first;
* two buckets, request capacity and token capacity, refilled continuously at
  ``limit x elapsed / 60`` and capped at the per-minute limit; both start full;
* a request's token cost is estimated before sending: prompt tokens (4 per message plus
  each value's tokens, plus 2) plus ``max_tokens``; it is sent only when both buckets
  hold enough, and both are debited (never refunded);
* the loop sleeps 1 ms per turn;
* any rate-limit error records its time, and the loop then sends nothing until
  ``pause_s`` (15 s in the original) have passed since it; ``Retry-After`` is ignored;
* each request gets ``max_attempts`` attempts (5), after which it is given up.

Deviations, all small: tokens are counted with :mod:`llm.tokens` (the emulator's counter)
instead of tiktoken, and requests come from a list instead of a JSONL file. Each call opens
its own ``aiohttp`` session, as the original does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.workload import Call
from llm.tokens import count_text_tokens


@dataclass
class _Job:
    call: Call
    attempts_left: int


@dataclass
class CookbookStats:
    """Counters like the original's ``StatusTracker``."""

    rate_limit_errors: int = 0
    other_errors: int = 0
    failed: int = 0
    time_of_last_rate_limit_error: float = float("-inf")
    pauses: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def estimate_tokens(call: Call, model: str) -> int:
    """The original's estimate: prompt tokens of the chat body plus ``n x max_tokens``."""
    tokens = 0
    for message in call.messages():
        tokens += 4
        for value in message.values():
            tokens += count_text_tokens(value)
    return tokens + 2 + call.max_tokens


class CookbookProcessor:
    """Send ``calls`` to an OpenAI-style ``/chat/completions`` URL with the cookbook's policy."""

    def __init__(
        self,
        url: str,
        api_key: str,
        model: str,
        *,
        max_requests_per_minute: float,
        max_tokens_per_minute: float,
        max_attempts: int = 5,
        pause_s: float = 15.0,
        on_done: Callable[[bool, int], None] = lambda ok, tokens: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.model = model
        self.max_rpm = max_requests_per_minute
        self.max_tpm = max_tokens_per_minute
        self.max_attempts = max_attempts
        self.pause_s = pause_s
        self.on_done = on_done
        self.clock = clock
        self.stats = CookbookStats()
        self._retry: deque[_Job] = deque()
        self._in_progress = 0

    async def run(self, calls: list[Call]) -> CookbookStats:
        """Process every call; returns when all succeeded or ran out of attempts."""
        pending = iter(calls)
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._loop(pending, tasks)
        finally:
            for task in list(tasks):
                task.cancel()
        return self.stats

    async def _loop(self, pending: Iterator[Call], tasks: set[asyncio.Task[None]]) -> None:
        requests_left, tokens_left = float(self.max_rpm), float(self.max_tpm)
        last_update = self.clock()
        job: _Job | None = None
        exhausted = False
        while True:
            if job is None:
                if self._retry:
                    job = self._retry.popleft()
                elif not exhausted:
                    nxt = next(pending, None)
                    exhausted = nxt is None
                    job = _Job(nxt, self.max_attempts) if nxt is not None else None
            now = self.clock()
            elapsed, last_update = now - last_update, now
            requests_left = min(requests_left + self.max_rpm * elapsed / 60.0, self.max_rpm)
            tokens_left = min(tokens_left + self.max_tpm * elapsed / 60.0, self.max_tpm)
            if job is not None:
                cost = estimate_tokens(job.call, self.model)
                if requests_left >= 1 and tokens_left >= cost:
                    requests_left -= 1
                    tokens_left -= cost
                    job.attempts_left -= 1
                    self._in_progress += 1
                    task = asyncio.create_task(self._call(job))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    job = None
            if self._in_progress == 0 and exhausted and job is None and not self._retry:
                break
            await asyncio.sleep(0.001)
            await self._pause_after_rate_limit()

    async def _pause_after_rate_limit(self) -> None:
        since = self.clock() - self.stats.time_of_last_rate_limit_error
        if since < self.pause_s:
            self.stats.pauses += 1
            await asyncio.sleep(self.pause_s - since)

    async def _call(self, job: _Job) -> None:
        body = {"model": self.model, "messages": job.call.messages()}
        body["max_tokens"] = job.call.max_tokens
        error: str | None = None
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(self.url, headers=self.headers, json=body) as response:
                    payload = await response.json(content_type=None)
            if isinstance(payload, dict) and "error" in payload:
                error = str(payload["error"].get("message", ""))
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            error = type(exc).__name__
        self._in_progress -= 1
        if error is None:
            self.on_done(True, job.call.input_tokens)
            return
        if "rate limit" in error.lower():
            self.stats.time_of_last_rate_limit_error = self.clock()
            self.stats.rate_limit_errors += 1
        else:
            self.stats.other_errors += 1
        if job.attempts_left > 0:
            self._retry.append(job)
        else:
            self.stats.failed += 1
            self.on_done(False, 0)
