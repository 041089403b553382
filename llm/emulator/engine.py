"""The emulator's engine: everything between a parsed request and its rendered answer.

:class:`Engine` checks the key, looks the model up in the registry, reads the ``[[emu:…]]``
directives, injects faults, checks the context window and the model's reasoning settings,
applies the per-key rate limits, works out prompt caching, synthesises a deterministic
answer and says how long to take.
It never touches HTTP: the server (``server.py``) calls :meth:`Engine.prepare` (or
:meth:`Engine.generate`) and paces and renders the :class:`Outcome` through a wire module.
Helpers: ``engine_directives`` (markers), ``engine_limits`` (buckets), ``engine_cache``
(prefix caches), ``engine_answers`` and ``engine_schema`` (answers), ``engine_errors``
(provider wording), ``engine_reasoning`` (which reasoning settings a model takes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import random
import re
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from llm.emulator import engine_errors as errors
from llm.emulator.engine_answers import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_TOKENS,
    answer_text,
    choose_tools,
    default_thinking,
    fit_to_limit,
    json_answer,
    neutral_id,
    reasoning_tokens,
    stable_hash,
    text_chunks,
    thinking_summary,
    tool_call,
    tool_call_tokens,
)
from llm.emulator.engine_cache import CachePlan, ExplicitCaches, PromptCache
from llm.emulator.engine_directives import FAULT_KINDS, Directives, parse_directives
from llm.emulator.engine_limits import RateLimits, Throttled
from llm.emulator.engine_reasoning import check_reasoning
from llm.emulator.engine_schema import SchemaError
from llm.emulator.engine_timing import (
    LATENCY_DISTS,
    STREAM_HEADER_MODES,
    Timeline,
    latency_s,
    stream_headers_s,
)
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult, EmuToolCall, Segment
from llm.models import ModelInfo
from llm.tokens import count_text_tokens

ModelLookup = Callable[[str], ModelInfo | None]
_DATED_RE = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")
_RANDOM_FAULTS = ("429", "500", "529", "reset", "cut")
DEFAULT_MIN_CACHEABLE = 1024


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves (the CLI flags of ``python -m llm.emulator``).

    ``rpm``/``itpm``/``otpm`` are enforced per account over short windows (``burst_s``
    seconds of refill may go out at once; 60 would allow a whole minute's budget); limits
    left at ``None`` are still reported in headers, with a default tier's values (see
    ``engine_limits``). ``latency_ms`` is the time to first token, fixed or, with
    ``latency_dist="lognormal"``, the median of a seeded heavy-tailed draw whose log has
    standard deviation ``latency_sigma``. ``stream_headers`` says when a stream's headers
    leave: ``"recorded"``, after the provider's recorded delay (``engine_timing``), or
    ``"first-token"``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    latency_ms: float = 0
    latency_dist: str = "fixed"
    latency_sigma: float = 0.6
    stream_headers: str = "recorded"
    burst_s: float = 1.0
    tokens_per_s: float | None = None
    fault_rate: float = 0.0
    seed: int = 0
    #: When set, only this key is accepted (never shown in a repr).
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.latency_dist not in LATENCY_DISTS:
            raise ValueError(f"latency_dist must be one of {LATENCY_DISTS}")
        if self.stream_headers not in STREAM_HEADER_MODES:
            raise ValueError(f"stream_headers must be one of {STREAM_HEADER_MODES}")
        if self.latency_sigma < 0 or self.burst_s <= 0:
            raise ValueError("latency_sigma must be >= 0 and burst_s > 0")


class ConnectionFault(Exception):
    """The server must drop the connection: ``reset`` (no response) or ``cut`` (mid-way)."""

    def __init__(self, mode: str, outcome: Outcome | None = None) -> None:
        super().__init__(mode)
        self.mode = mode
        self.outcome = outcome


@dataclass(frozen=True)
class Outcome:
    """A prepared answer plus how to deliver it."""

    result: EmuResult
    #: Seconds before the first token.
    ttft_s: float = 0.0
    #: Seconds per output token after the first (0: instant).
    seconds_per_token: float = 0.0
    #: Stream about half of the answer, then drop the connection.
    cut: bool = False
    #: Seconds before a stream's headers (at most ``ttft_s``; a whole answer's come with it).
    headers_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.ttft_s + self.result.output_tokens * self.seconds_per_token


@dataclass
class EngineStats:
    """Counters for tests and benchmarks (``GET /_emulator/stats``)."""

    requests: int = 0
    count_requests: int = 0
    rate_limited: int = 0
    faults: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_provider: Counter[str] = field(default_factory=Counter)
    #: Admissions, limit 429s and calls in flight over time.
    timeline: Timeline = field(default_factory=Timeline)
    #: The enforced requests-per-minute limit (for the share of the rate used).
    rpm: int | None = None

    def record_status(self, status: int) -> None:
        self.by_status[str(status)] += 1
        if status == 429:
            self.rate_limited += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "count_requests": self.count_requests,
            "rate_limited": self.rate_limited,
            "faults": self.faults,
            "by_status": dict(self.by_status),
            "by_provider": dict(self.by_provider),
            "timeline": self.timeline.summary(self.rpm),
        }


def _registry_lookup(name: str) -> ModelInfo | None:
    from llm.registry import get_model_info  # imported late: the registry is optional here

    return get_model_info(name)


class _Attempts:
    """How many times each identical request was seen (bounded memory)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def next(self, key: str) -> int:
        count = self._seen.pop(key, 0) + 1
        self._seen[key] = count
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return count

    def clear(self) -> None:
        self._seen.clear()


class Engine:
    """Stateful request processor shared by every route of one emulator."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        model_lookup: ModelLookup | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._lookup = model_lookup or _registry_lookup
        self.limits = RateLimits(
            config.rpm, config.itpm, config.otpm, clock, burst_s=config.burst_s
        )
        self.cache = PromptCache(clock)
        self.explicit = ExplicitCaches(wall)
        self.stats = EngineStats(rpm=config.rpm)
        self._attempts = _Attempts()

    # ----------------------------------------------------------------- public API
    async def generate(self, req: EmuRequest, api_key: str | None) -> EmuResult:
        """Answer ``req`` after the emulated latency; raise EmuError or ConnectionFault."""
        outcome = self.prepare(req, api_key)
        if outcome.cut:
            raise ConnectionFault("cut", outcome)
        if outcome.duration_s > 0:
            await self._sleep(outcome.duration_s)
        return outcome.result

    def prepare(self, req: EmuRequest, api_key: str | None) -> Outcome:
        """Do all accounting for ``req`` now and return the answer with its timing."""
        request_id = "req_" + secrets.token_hex(12)
        self.stats.requests += 1
        self.stats.by_provider[req.provider] += 1
        self.stats.timeline.request(self._clock())
        try:
            return self._prepare(req, api_key, request_id)
        except EmuError as err:
            raise self.finish_error(err, api_key, request_id, req.provider) from None

    def finish_error(
        self,
        err: EmuError,
        api_key: str | None,
        request_id: str | None = None,
        provider: str = "",
    ) -> EmuError:
        """``err`` with a request id and the account's current limit values filled in."""
        known = api_key if api_key and self._key_ok(api_key) else None
        return replace(
            err,
            request_id=err.request_id or request_id or "req_" + secrets.token_hex(12),
            limits=err.limits or self.limits.snapshot(known, provider),
        )

    def count(self, req: EmuRequest, api_key: str | None = None) -> int:
        """Input tokens of ``req``: its segments plus any explicit cached content."""
        return sum(seg.tokens for seg in req.segments) + self._explicit_tokens(req, api_key)

    def check_request(self, req: EmuRequest, api_key: str | None) -> ModelInfo:
        """Authenticate and resolve the model (what count-tokens routes need)."""
        self.stats.count_requests += 1
        try:
            self._authenticate(req.provider, api_key)
            return self._model(req.provider, req.model)
        except EmuError as err:
            raise self.finish_error(err, api_key) from None

    def reset(self) -> None:
        """Forget all state: counters, caches, buckets and attempt counts."""
        self.stats = EngineStats(rpm=self.config.rpm)
        self.limits.clear()
        self.cache.clear()
        self.explicit.clear()
        self._attempts.clear()

    # ------------------------------------------------------- Gemini explicit caches
    def create_cached_content(
        self,
        api_key: str | None,
        model: str,
        segments: tuple[Segment, ...],
        ttl_s: float,
        display_name: str | None,
    ) -> dict[str, Any]:
        key = self._authenticate("google", api_key)
        info = self._model("google", model)
        total = sum(seg.tokens for seg in segments)
        minimum = info.capabilities.min_cacheable_tokens or DEFAULT_MIN_CACHEABLE
        if total < minimum:
            raise EmuError(
                "invalid_request",
                f"Cached content is too small. total_token_count={total}, "
                f"min_total_token_count={minimum}",
            )
        name = "models/" + info.api_id.removeprefix("models/")
        return self.explicit.create(key, name, segments, ttl_s, display_name).info()

    def get_cached_content(self, api_key: str | None, name: str) -> dict[str, Any]:
        key = self._authenticate("google", api_key)
        item = self.explicit.get(key, name)
        if item is None:
            raise _cache_not_found()
        return item.info()

    def list_cached_contents(self, api_key: str | None) -> list[dict[str, Any]]:
        key = self._authenticate("google", api_key)
        return [item.info() for item in self.explicit.list(key)]

    def update_cached_content_ttl(
        self, api_key: str | None, name: str, ttl_s: float
    ) -> dict[str, Any]:
        key = self._authenticate("google", api_key)
        item = self.explicit.update_ttl(key, name, ttl_s)
        if item is None:
            raise _cache_not_found()
        return item.info()

    def delete_cached_content(self, api_key: str | None, name: str) -> None:
        key = self._authenticate("google", api_key)
        if not self.explicit.delete(key, name):
            raise _cache_not_found()

    # ------------------------------------------------------------------ the steps
    def _prepare(self, req: EmuRequest, api_key: str | None, request_id: str) -> Outcome:
        key = self._authenticate(req.provider, api_key)
        info = self._model(req.provider, req.model)
        directives, topic = parse_directives(req.last_user_text)
        request_key = _request_key(key, req)
        attempt = self._attempts.next(request_key)
        fault = self._fault(directives, request_key, attempt)
        if fault is not None:
            self.stats.faults += 1
            _raise_unless_cut(fault, req.provider)
        explicit = self._explicit_tokens(req, key)
        input_tokens = sum(seg.tokens for seg in req.segments) + explicit
        self._check_sizes(req, info, input_tokens)
        check_reasoning(req, info)
        scope = f"{key}\x00{info.provider}\x00{info.api_id}"
        plan = self._cache_plan(req, info, scope, explicit)
        anthropic = req.provider == "anthropic"  # Anthropic's ITPM ignores cache reads
        # Anthropic counts max_tokens against OTPM at admission and corrects it at the end.
        estimate = (req.max_tokens or 0) if anthropic else 0
        self._admit(req, key, input_tokens - (plan.cached_tokens if anthropic else 0), estimate)
        ttft_s = self._latency_s(directives, request_key, attempt)
        result = self._answer(req, info, directives, topic, request_key, attempt)
        self.limits.charge_output(key, result.output_tokens, req.provider, estimate)
        self.cache.commit(scope, plan, ready_at=self._clock() + ttft_s)
        result = replace(
            result,
            request_id=request_id,
            input_tokens=input_tokens,
            cached_tokens=plan.cached_tokens,
            cache_write_tokens=plan.write_tokens,
            cache_write_1h_tokens=plan.write_1h_tokens,
            limits=self.limits.snapshot(key, req.provider),
        )
        tps = self.config.tokens_per_s
        headers_s = stream_headers_s(
            req.provider, self.config.stream_headers, ttft_s, self.config.seed, request_key, attempt
        )
        return Outcome(
            result, ttft_s, 1.0 / tps if tps else 0.0, cut=fault == "cut", headers_s=headers_s
        )

    def _latency_s(self, directives: Directives, request_key: str, attempt: int) -> float:
        if directives.latency_ms is not None:  # a marker asks for an exact latency
            return directives.latency_ms / 1000
        config = self.config
        return latency_s(
            config.latency_ms,
            config.latency_dist,
            config.latency_sigma,
            config.seed,
            request_key,
            attempt,
        )

    def _key_ok(self, api_key: str) -> bool:
        expected = self.config.api_key
        return expected is None or hmac.compare_digest(api_key.encode(), expected.encode())

    def _authenticate(self, provider: str, api_key: str | None) -> str:
        if not api_key:
            raise errors.authentication(provider, missing=True)
        if not self._key_ok(api_key):
            raise errors.authentication(provider, missing=False)
        return api_key

    def _model(self, provider: str, name: str) -> ModelInfo:
        bare = name.removeprefix("models/") if provider == "google" else name
        info = self._lookup(bare) if bare else None
        if info is None or info.provider != provider or self._retired(info):
            raise errors.model_not_found(provider, bare)  # a retired model 404s like the API
        return info

    def _retired(self, info: ModelInfo) -> bool:
        """Retired on the UTC day of the injected wall clock (tests pin a day with ``wall``)."""
        today = dt.datetime.fromtimestamp(self._wall(), dt.UTC).date()
        return info.status_on(today) == "retired"

    def _fault(self, directives: Directives, request_key: str, attempt: int) -> str | None:
        if directives.fault_active(attempt):
            return directives.fault
        rate = self.config.fault_rate
        if rate > 0:
            draw = stable_hash(self.config.seed, request_key, attempt, "fault") / 2**64
            if draw < rate:
                pick = stable_hash(self.config.seed, request_key, attempt, "kind")
                return _RANDOM_FAULTS[pick % len(_RANDOM_FAULTS)]
        return None

    def _explicit_tokens(self, req: EmuRequest, api_key: str | None) -> int:
        if not req.cached_content:
            return 0
        item = self.explicit.get(api_key or "", req.cached_content)
        if item is None:
            raise _cache_not_found()
        wanted = "models/" + req.model.removeprefix("models/")
        info = self._lookup(req.model.removeprefix("models/"))
        if info is not None and item.model != "models/" + info.api_id and item.model != wanted:
            raise EmuError(
                "invalid_request",
                f"Model used by GenerateContent request ({wanted}) and CachedContent "
                f"({item.model}) has to be the same.",
            )
        return item.total_tokens

    def _check_sizes(self, req: EmuRequest, info: ModelInfo, input_tokens: int) -> None:
        if input_tokens > info.context_window:
            raise errors.context_length(req, input_tokens, info.context_window)
        if req.max_tokens is not None and req.max_tokens > info.max_output_tokens:
            version = model_version(req.model, info)
            raise errors.max_tokens_too_large(req, req.max_tokens, info.max_output_tokens, version)

    def _cache_plan(self, req: EmuRequest, info: ModelInfo, scope: str, explicit: int) -> CachePlan:
        if explicit:
            return CachePlan(cached_tokens=explicit)
        minimum = info.capabilities.min_cacheable_tokens or DEFAULT_MIN_CACHEABLE
        if req.provider == "anthropic":
            return self.cache.plan_anthropic(scope, req.segments, minimum)
        if req.provider == "openai":
            return self.cache.plan_openai(scope, req.segments)
        return self.cache.plan_gemini(scope, req.segments, minimum)

    def _admit(self, req: EmuRequest, key: str, input_tokens: int, output_estimate: int) -> None:
        try:
            self.limits.admit(key, input_tokens, req.provider, output_estimate)
        except Throttled as exc:
            self.stats.timeline.throttle(self._clock())
            limit = self.limits.snapshot(key, req.provider).get(f"{exc.limit_name}_limit")
            raise errors.rate_limited(
                req.provider, req.model, exc.limit_name, limit, exc.retry_after_s
            ) from None
        self.stats.timeline.admit(self._clock())

    def _answer(
        self,
        req: EmuRequest,
        info: ModelInfo,
        directives: Directives,
        topic: str,
        request_key: str,
        attempt: int,
    ) -> EmuResult:
        rng = random.Random(stable_hash(self.config.seed, request_key))
        cap = req.max_tokens if req.max_tokens is not None else info.max_output_tokens
        default = default_thinking(req.provider, info)
        reasoning = reasoning_tokens(req.reasoning_effort, req.reasoning_budget, default, rng)
        calls, text, answer_tokens = self._answer_body(
            req, directives, topic, request_key, rng, attempt
        )
        finish = "tool_calls" if calls else "stop"
        reasoning, allowed = fit_to_limit(reasoning, answer_tokens, cap)
        if allowed < answer_tokens:
            text = truncate_tokens(text, allowed)
            answer_tokens = allowed if calls else count_text_tokens(text)
            finish = "length"
        thoughts = None
        if reasoning > 0 and (req.include_thoughts or req.provider == "anthropic"):
            thoughts = thinking_summary(topic)
        return EmuResult(
            request_id="",
            model_version=model_version(req.model, info),
            text=text,
            tool_calls=calls,
            thinking_text=thoughts,
            input_tokens=0,
            output_tokens=answer_tokens + reasoning,
            reasoning_tokens=reasoning,
            finish=finish,
            text_chunks=text_chunks(text),
        )

    def _answer_body(
        self,
        req: EmuRequest,
        directives: Directives,
        topic: str,
        request_key: str,
        rng: random.Random,
        attempt: int,
    ) -> tuple[tuple[EmuToolCall, ...], str, int]:
        """(tool calls, text, answer tokens): a tool call, a JSON document or prose."""
        tools = choose_tools(req, topic)
        if tools:
            calls = []
            for index, tool in enumerate(tools):
                extra = (index,) if index else ()
                call_id = neutral_id(self.config.seed, request_key, tool.name, *extra)
                try:
                    calls.append(tool_call(tool, call_id, rng))
                except (SchemaError, RecursionError) as exc:
                    raise EmuError("invalid_request", f"Unsupported tool schema: {exc}") from None
            return tuple(calls), "", sum(tool_call_tokens(call) for call in calls)
        if req.json_schema is not None:
            violate = directives.invalid_json_active(attempt)
            try:
                text = json_answer(req.json_schema, rng, violate=violate)
            except (SchemaError, RecursionError) as exc:
                raise EmuError("invalid_request", f"Unsupported JSON schema: {exc}") from None
            return (), text, count_text_tokens(text)
        target = directives.tokens
        if target is None:
            target = rng.randint(DEFAULT_MIN_TOKENS, DEFAULT_MAX_TOKENS)
        text = answer_text(topic, target, rng)
        return (), text, count_text_tokens(text)


def _raise_unless_cut(fault: str, provider: str) -> None:
    if fault == "reset":
        raise ConnectionFault("reset")
    if fault != "cut":
        raise errors.injected(provider, fault)


def _request_key(api_key: str, req: EmuRequest) -> str:
    parts = [api_key, req.provider, req.model, *(seg.key for seg in req.segments)]
    return str(stable_hash(*parts, req.last_user_text))


def _cache_not_found() -> EmuError:
    return EmuError("not_found", "CachedContent not found (or permission denied)")


def model_version(requested: str, info: ModelInfo) -> str:
    """The dated model id a response reports (the requested id if it is dated already)."""
    bare = requested.removeprefix("models/")
    if _DATED_RE.search(bare):
        return bare
    dated = [name for name in (info.api_id, *info.aliases) if _DATED_RE.search(name)]
    return dated[0] if dated else info.api_id


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` with at most ``limit`` tokens."""
    if count_text_tokens(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_text_tokens(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return text[:low]


__all__ = [
    "FAULT_KINDS",
    "ConnectionFault",
    "EmulatorConfig",
    "Engine",
    "EngineStats",
    "Outcome",
    "model_version",
]
