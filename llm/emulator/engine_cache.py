"""Prompt caching as the three providers do it, keyed by API key and model.

A prompt is a chain of :class:`~llm.emulator.protocol.Segment`; each position in the chain
has a prefix hash and a cumulative token count. An entry is *readable* once the response
that wrote it has started (``ready_at``) and until it expires; a read refreshes its expiry.

* Anthropic (:meth:`PromptCache.plan_anthropic`): explicit breakpoints (``cache_ttl``).
  The longest readable prefix up to the last breakpoint is read; every later breakpoint at
  or above the model minimum is written, the written tokens split by the TTL of the
  breakpoint that closes each part.
* OpenAI (:meth:`PromptCache.plan_openai`): automatic for prompts of 1024+ tokens; the read
  is rounded down to 1024 + k·128 tokens; every prefix is stored, nothing is billed as a write.
* Gemini implicit (:meth:`PromptCache.plan_gemini`): like OpenAI with the model minimum and
  no rounding. Explicit ``cachedContents`` live in :class:`ExplicitCaches`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm.emulator.protocol import Segment

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
OPENAI_MIN_TOKENS = 1024
OPENAI_STEP = 128
AUTO_TTL_S = 300.0


@dataclass
class CacheEntry:
    tokens: int
    ready_at: float
    expires_at: float
    ttl_s: float


@dataclass
class CachePlan:
    """What one request reads and writes; applied by :meth:`PromptCache.commit`."""

    cached_tokens: int = 0
    write_tokens: int = 0
    write_1h_tokens: int = 0
    read_hash: str | None = None
    #: (prefix hash, tokens, ttl seconds) to store.
    writes: list[tuple[str, int, float]] = field(default_factory=list)


def prefix_chain(segments: Sequence[Segment]) -> tuple[list[str], list[int]]:
    """Prefix hashes and cumulative token counts, one per segment."""
    hashes: list[str] = []
    totals: list[int] = []
    digest = hashlib.sha256(b"prefix")
    running = 0
    for segment in segments:
        digest.update(len(segment.key).to_bytes(8, "big") + segment.key.encode())
        hashes.append(digest.copy().hexdigest())
        running += segment.tokens
        totals.append(running)
    return hashes, totals


class PromptCache:
    """Implicit and breakpoint caches for every (API key, model) scope."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._scopes: dict[str, dict[str, CacheEntry]] = {}

    def _readable(self, scope: str, prefix_hash: str, now: float) -> CacheEntry | None:
        entry = self._scopes.get(scope, {}).get(prefix_hash)
        if entry is None or now >= entry.expires_at or now < entry.ready_at:
            return None
        return entry

    def _longest_read(self, scope: str, hashes: list[str], upto: int) -> int:
        now = self._clock()
        for index in range(upto, -1, -1):
            if self._readable(scope, hashes[index], now) is not None:
                return index
        return -1

    def plan_anthropic(self, scope: str, segments: Sequence[Segment], min_tokens: int) -> CachePlan:
        breakpoints = [i for i, seg in enumerate(segments) if seg.cache_ttl]
        if not breakpoints:
            return CachePlan()
        hashes, totals = prefix_chain(segments)
        read = self._longest_read(scope, hashes, breakpoints[-1])
        plan = CachePlan(cached_tokens=totals[read] if read >= 0 else 0)
        if read >= 0:
            plan.read_hash = hashes[read]
        covered = plan.cached_tokens
        for index in breakpoints:
            if index <= read or totals[index] < min_tokens:
                continue
            part = totals[index] - covered
            covered = totals[index]
            ttl = segments[index].cache_ttl or "5m"
            plan.write_tokens += part
            if ttl == "1h":
                plan.write_1h_tokens += part
            plan.writes.append((hashes[index], totals[index], TTL_SECONDS[ttl]))
        return plan

    def plan_openai(self, scope: str, segments: Sequence[Segment]) -> CachePlan:
        plan = self._plan_automatic(scope, segments, OPENAI_MIN_TOKENS)
        if plan.cached_tokens:
            steps = (plan.cached_tokens - OPENAI_MIN_TOKENS) // OPENAI_STEP
            plan.cached_tokens = OPENAI_MIN_TOKENS + steps * OPENAI_STEP
        return plan

    def plan_gemini(self, scope: str, segments: Sequence[Segment], min_tokens: int) -> CachePlan:
        return self._plan_automatic(scope, segments, min_tokens)

    def _plan_automatic(
        self, scope: str, segments: Sequence[Segment], min_tokens: int
    ) -> CachePlan:
        if not segments:
            return CachePlan()
        hashes, totals = prefix_chain(segments)
        read = self._longest_read(scope, hashes, len(segments) - 1)
        plan = CachePlan()
        if read >= 0 and totals[read] >= min_tokens:
            plan.cached_tokens = totals[read]
            plan.read_hash = hashes[read]
        plan.writes = [
            (hashes[i], totals[i], AUTO_TTL_S)
            for i in range(len(segments))
            if totals[i] >= min_tokens and i > read
        ]
        return plan

    def commit(self, scope: str, plan: CachePlan, ready_at: float) -> None:
        """Refresh the entry read and store the entries written."""
        now = self._clock()
        entries = self._scopes.setdefault(scope, {})
        if plan.read_hash is not None and plan.read_hash in entries:
            read = entries[plan.read_hash]
            read.expires_at = max(read.expires_at, now + read.ttl_s)
        for prefix_hash, tokens, ttl_s in plan.writes:
            old = entries.get(prefix_hash)
            if old is not None and now < old.expires_at:
                old.ready_at = min(old.ready_at, ready_at)
                old.expires_at = max(old.expires_at, now + ttl_s)
                old.ttl_s = max(old.ttl_s, ttl_s)
            else:
                entries[prefix_hash] = CacheEntry(tokens, ready_at, now + ttl_s, ttl_s)

    def clear(self) -> None:
        self._scopes.clear()


@dataclass
class ExplicitCache:
    api_key: str
    name: str
    model: str
    display_name: str | None
    segments: tuple[Segment, ...]
    total_tokens: int
    create_time: dt.datetime
    update_time: dt.datetime
    expire_time: dt.datetime

    def info(self) -> dict[str, Any]:
        """The fields ``gemini_wire.render_cached_content`` renders."""
        return {
            "name": self.name,
            "model": self.model,
            "display_name": self.display_name,
            "create_time": self.create_time,
            "update_time": self.update_time,
            "expire_time": self.expire_time,
            "total_tokens": self.total_tokens,
        }


class ExplicitCaches:
    """Gemini ``cachedContents`` resources, per API key, expiring by wall-clock time."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._items: dict[str, ExplicitCache] = {}

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._wall(), tz=dt.UTC)

    def _expire(self) -> None:
        now = self._now()
        for name in [n for n, item in self._items.items() if item.expire_time <= now]:
            del self._items[name]

    def create(
        self,
        api_key: str,
        model: str,
        segments: tuple[Segment, ...],
        ttl_s: float,
        display_name: str | None,
    ) -> ExplicitCache:
        now = self._now()
        name = "cachedContents/" + secrets.token_hex(8)
        item = ExplicitCache(
            api_key=api_key,
            name=name,
            model=model,
            display_name=display_name,
            segments=segments,
            total_tokens=sum(seg.tokens for seg in segments),
            create_time=now,
            update_time=now,
            expire_time=now + dt.timedelta(seconds=ttl_s),
        )
        self._items[name] = item
        return item

    def get(self, api_key: str, name: str) -> ExplicitCache | None:
        self._expire()
        if not name.startswith("cachedContents/"):
            name = "cachedContents/" + name
        item = self._items.get(name)
        return item if item is not None and item.api_key == api_key else None

    def list(self, api_key: str) -> list[ExplicitCache]:
        self._expire()
        return [item for item in self._items.values() if item.api_key == api_key]

    def update_ttl(self, api_key: str, name: str, ttl_s: float) -> ExplicitCache | None:
        item = self.get(api_key, name)
        if item is not None:
            item.update_time = self._now()
            item.expire_time = item.update_time + dt.timedelta(seconds=ttl_s)
        return item

    def delete(self, api_key: str, name: str) -> bool:
        item = self.get(api_key, name)
        if item is None:
            return False
        del self._items[item.name]
        return True

    def clear(self) -> None:
        self._items.clear()
