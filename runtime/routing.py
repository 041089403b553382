"""Routing policy, free of Ray: route tables, the choice among actors, fallback chains.

The :class:`~actors.router_actor.RouterActor` polls every provider actor's stats and builds a
:class:`RouteTable`; drivers (:class:`~actors.executor.RayExecutor`) cache that table and
pick an actor per request with :class:`ActorChooser`, so the router is not a hop per request.

Choice among the actors of one provider (one actor per account):

1. actors whose circuit is not open and whose last poll succeeded, if there are any;
2. of those, the ones whose headroom is within :data:`HEADROOM_TOLERANCE` of the best;
3. of those, the one this driver has the fewest calls in flight to; ties go round-robin.

Fallback chains (which models stand in when a model is overloaded or its circuit is open):

* configured chains, from ``LLM_FALLBACKS`` or a settings file, written
  ``"claude-sonnet-4.6>gemini-3.1-pro-preview>gpt-5;claude-haiku-4.5>gemini-2.5-flash"``
  (``;`` between chains, ``>`` between the model and its stand-ins, first choice first);
* otherwise, for requests the caller routed by task/budget only (it asked for "the best
  model for X", not a named model), the registry's :func:`llm.recommend.fallback_models`;
* otherwise none: a request for a named model is never silently sent to another model.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm.exceptions import ConfigurationError, ModelNotFoundError
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest
from llm.recommend import fallback_models
from llm.registry import get_model_info, resolve_model

#: Actors whose headroom is this close to the best one's count as equally good.
HEADROOM_TOLERANCE = 0.1
#: How many derived fallbacks a task-routed request may try.
DERIVED_FALLBACKS = 2


class ActorRoute(BaseModel):
    """One provider actor as the router last saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    provider: str
    account: str = "default"
    #: Free share of the account's tightest rate-limit bucket, 0..1.
    headroom: float = 1.0
    in_flight: int = 0
    #: Calls the account's budget wants in flight (0: not reported).
    in_flight_target: int = 0
    breaker_state: str = "closed"
    #: False when the last stats poll failed (the actor may be restarting).
    reachable: bool = True

    @property
    def usable(self) -> bool:
        return self.reachable and self.breaker_state != "open"


class RouteTable(BaseModel):
    """What drivers cache: the actors of every provider and the configured fallback chains."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 0
    #: ``time.time()`` when the router built this table.
    created_at: float = 0.0
    providers: dict[str, tuple[ActorRoute, ...]] = Field(default_factory=dict)
    fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def actors(self, provider: str) -> tuple[ActorRoute, ...]:
        """The actors of ``provider`` (empty if it has none)."""
        return self.providers.get(provider, ())

    def with_headroom(self, provider: str) -> list[str]:
        """Names of the usable actors of ``provider`` with headroom left, best first."""
        usable = [a for a in self.actors(provider) if a.usable and a.headroom > 0]
        return [a.name for a in sorted(usable, key=lambda a: (-a.headroom, a.in_flight, a.name))]


def route_from_stats(name: str, provider: str, stats: Any | None) -> ActorRoute:
    """An :class:`ActorRoute` from an ``EngineStats`` (None: the poll failed)."""
    if stats is None:
        return ActorRoute(name=name, provider=provider, reachable=False)
    return ActorRoute(
        name=name,
        provider=provider,
        account=str(getattr(stats, "account", "default")),
        headroom=float(getattr(stats, "headroom", 1.0)),
        in_flight=int(getattr(stats, "in_flight", 0)),
        in_flight_target=int(getattr(stats, "in_flight_target", 0)),
        breaker_state=str(getattr(stats, "breaker_state", "closed")),
    )


def build_route_table(
    routes: Iterable[ActorRoute],
    fallbacks: Mapping[str, Sequence[str]],
    *,
    version: int,
    now: float | None = None,
) -> RouteTable:
    """Group ``routes`` by provider (in name order) into a new table."""
    grouped: dict[str, list[ActorRoute]] = {}
    for route in routes:
        grouped.setdefault(route.provider, []).append(route)
    return RouteTable(
        version=version,
        created_at=time.time() if now is None else now,
        providers={p: tuple(sorted(rs, key=lambda r: r.name)) for p, rs in grouped.items()},
        fallbacks={model: tuple(chain) for model, chain in fallbacks.items()},
    )


class ActorChooser:
    """Picks an actor of a provider (see the module docstring) and counts calls in flight."""

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._turn = itertools.count()

    def choose(self, routes: Sequence[ActorRoute], *, exclude: Iterable[str] = ()) -> str | None:
        """The actor to send the next call to, or None if ``routes`` (minus ``exclude``) is empty."""
        skip = set(exclude)
        pool = [r for r in routes if r.name not in skip]
        if not pool:
            return None
        pool = [r for r in pool if r.usable] or pool
        best = max(r.headroom for r in pool)
        pool = [r for r in pool if r.headroom >= best - HEADROOM_TOLERANCE]
        fewest = min(self._in_flight.get(r.name, 0) for r in pool)
        pool = [r for r in pool if self._in_flight.get(r.name, 0) == fewest]
        return pool[next(self._turn) % len(pool)].name

    def started(self, name: str) -> None:
        self._in_flight[name] = self._in_flight.get(name, 0) + 1

    def finished(self, name: str) -> None:
        left = self._in_flight.get(name, 0) - 1
        if left > 0:
            self._in_flight[name] = left
        else:
            self._in_flight.pop(name, None)

    def in_flight(self, name: str) -> int:
        return self._in_flight.get(name, 0)


def parse_fallbacks(
    text: str | None, *, resolve: Callable[[str], ModelInfo] = resolve_model
) -> dict[str, tuple[str, ...]]:
    """Parse ``"a>b>c;d>e"`` into ``{"a": ("b", "c"), "d": ("e",)}`` with canonical names.

    Raises :class:`ConfigurationError` for an unknown model or a chain without a stand-in.
    """
    chains: dict[str, tuple[str, ...]] = {}
    for raw in (text or "").split(";"):
        names = [part.strip() for part in raw.split(">") if part.strip()]
        if not names:
            continue
        if len(names) < 2:
            raise ConfigurationError(f"fallback chain {raw.strip()!r} names no stand-in model")
        try:
            canonical = [resolve(name).name for name in names]
        except ModelNotFoundError as error:
            raise ConfigurationError(f"fallback chain {raw.strip()!r}: {error}") from None
        head, rest = canonical[0], [n for n in canonical[1:] if n != canonical[0]]
        chains[head] = tuple(dict.fromkeys(rest))
    return chains


def fallback_chain(
    model: ModelInfo,
    configured: Mapping[str, Sequence[str]],
    *,
    routed_by_task: bool = False,
    limit: int = DERIVED_FALLBACKS,
) -> list[str]:
    """Stand-ins for ``model``, first choice first (see the module docstring)."""
    chain = configured.get(model.name)
    if chain is not None:
        return list(chain)
    if not routed_by_task:
        return []
    return [candidate.name for candidate in fallback_models(model)[:limit]]


def fits(request: ProviderRequest, model: ModelInfo) -> bool:
    """Whether ``model`` can serve ``request`` (tools, schema, reasoning, images)."""
    caps = model.capabilities
    needs_vision = any(
        getattr(part, "type", None) == "image"
        for message in request.messages
        for part in (message.content if isinstance(message.content, list | tuple) else ())
    )
    return not (
        (request.tools and not caps.tools)
        or (request.structured_output_schema is not None and not caps.structured_output)
        or (request.reasoning_effort is not None and not caps.reasoning)
        or (needs_vision and not caps.vision)
    )


def fallback_request(request: ProviderRequest, name: str) -> ProviderRequest | None:
    """``request`` re-aimed at model ``name``, or None if that model cannot serve it."""
    model = get_model_info(name)
    if model is None or not fits(request, model):
        return None
    update: dict[str, Any] = {
        "model": model,
        "max_tokens": min(request.max_tokens, model.max_output_tokens),
        "cached_content": None,
    }
    if not model.capabilities.sampling_params:
        update["temperature"] = None
    return request.model_copy(update=update)


def derived_request_id(request_id: str, attempt: int) -> str:
    """The id of the ``attempt``-th re-issue of a request (to another actor or model).

    A re-issue gets its own id so that its ledger row is never mistaken for a duplicate of
    the original call's row.
    """
    return f"{request_id}~{attempt}"
