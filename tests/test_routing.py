"""The routing policy without Ray: route tables, the choice among actors, fallback chains."""

from __future__ import annotations

import pytest

from llm.exceptions import ConfigurationError
from llm.providers.base import ProviderRequest, ToolSpec
from llm.registry import get_model_info
from llm.types import Message, MessageRole
from runtime.routing import (
    ActorChooser,
    ActorRoute,
    build_route_table,
    derived_request_id,
    fallback_chain,
    fallback_request,
    parse_fallbacks,
    route_from_stats,
)


def route(name, headroom=1.0, *, provider="anthropic", breaker="closed", reachable=True):
    return ActorRoute(
        name=name,
        provider=provider,
        headroom=headroom,
        breaker_state=breaker,
        reachable=reachable,
    )


def request(model="claude-sonnet-4.6", **changes):
    fields = dict(
        model=get_model_info(model),
        messages=(Message(role=MessageRole.USER, content="hi"),),
        max_tokens=60000,
    )
    fields.update(changes)
    return ProviderRequest(**fields)


# --- route tables ---------------------------------------------------------------------


def test_table_groups_actors_by_provider_and_lists_those_with_headroom_best_first():
    table = build_route_table(
        [
            route("a-low", 0.2),
            route("a-high", 0.9),
            route("a-empty", 0.0),
            route("a-open", 1.0, breaker="open"),
            route("g", 0.5, provider="google"),
        ],
        {"claude-sonnet-4.6": ["gpt-5"]},
        version=7,
        now=123.0,
    )
    assert table.version == 7 and table.created_at == 123.0
    assert [a.name for a in table.actors("anthropic")] == ["a-empty", "a-high", "a-low", "a-open"]
    assert table.with_headroom("anthropic") == ["a-high", "a-low"]
    assert table.with_headroom("google") == ["g"]
    assert table.actors("openai") == ()
    assert table.fallbacks == {"claude-sonnet-4.6": ("gpt-5",)}


def test_a_failed_poll_marks_the_actor_unreachable():
    class Stats:
        account, headroom, in_flight, breaker_state = "team-a", 0.4, 3, "half_open"

    seen = route_from_stats("x", "openai", Stats())
    assert (seen.account, seen.headroom, seen.in_flight, seen.breaker_state) == (
        "team-a",
        0.4,
        3,
        "half_open",
    )
    assert seen.usable
    assert not route_from_stats("x", "openai", None).usable


def test_table_survives_a_pickle_round_trip():
    import pickle

    table = build_route_table([route("a")], {"m": ["n"]}, version=1)
    assert pickle.loads(pickle.dumps(table)) == table


# --- choosing an actor ----------------------------------------------------------------


def test_chooser_prefers_the_actor_with_most_headroom():
    chooser = ActorChooser()
    routes = [route("a", 0.1), route("b", 0.9), route("c", 0.3)]
    assert {chooser.choose(routes) for _ in range(5)} == {"b"}


def test_chooser_round_robins_among_equally_good_actors():
    chooser = ActorChooser()
    routes = [route("a", 0.95), route("b", 1.0), route("c", 0.2)]
    assert [chooser.choose(routes) for _ in range(4)] == ["a", "b", "a", "b"]


def test_chooser_spreads_by_this_drivers_calls_in_flight():
    chooser = ActorChooser()
    routes = [route("a"), route("b")]
    chooser.started("a")
    chooser.started("a")
    chooser.started("b")
    assert chooser.choose(routes) == "b"
    chooser.finished("a")
    chooser.finished("a")
    assert chooser.in_flight("a") == 0
    assert chooser.choose(routes) == "a"


def test_chooser_avoids_open_circuits_and_unreachable_actors_unless_nothing_else_is_left():
    chooser = ActorChooser()
    broken = [route("open", 1.0, breaker="open"), route("gone", 1.0, reachable=False)]
    assert chooser.choose([*broken, route("ok", 0.05)]) == "ok"
    assert chooser.choose(broken) in {"open", "gone"}


def test_chooser_skips_excluded_actors_and_returns_none_when_none_are_left():
    chooser = ActorChooser()
    routes = [route("a"), route("b", 0.5)]
    assert chooser.choose(routes, exclude=["a"]) == "b"
    assert chooser.choose(routes, exclude=["a", "b"]) is None
    assert chooser.choose([]) is None


# --- fallback chains ------------------------------------------------------------------


def test_parse_fallbacks_resolves_names_to_canonical_ones():
    chains = parse_fallbacks(
        " claude-sonnet-4-6 > gemini-3.1-pro-preview > gpt-5 ; claude-haiku-4.5>gemini-2.5-flash;"
    )
    assert chains == {
        "claude-sonnet-4.6": ("gemini-3.1-pro-preview", "gpt-5"),
        "claude-haiku-4.5": ("gemini-2.5-flash",),
    }
    assert parse_fallbacks(None) == {} and parse_fallbacks("") == {}


@pytest.mark.parametrize("text", ["claude-sonnet-4.6>no-such-model", "claude-sonnet-4.6"])
def test_parse_fallbacks_rejects_unknown_models_and_chains_without_stand_ins(text):
    with pytest.raises(ConfigurationError):
        parse_fallbacks(text)


def test_a_configured_chain_is_used_for_any_request_of_that_model():
    model = get_model_info("claude-sonnet-4.6")
    chains = {"claude-sonnet-4.6": ("gpt-5",)}
    assert fallback_chain(model, chains) == ["gpt-5"]
    assert fallback_chain(model, chains, routed_by_task=True) == ["gpt-5"]


@pytest.mark.real_calendar  # the derived chain changes as models retire; these facts do not
def test_without_a_chain_only_task_routed_requests_fall_back_to_other_providers():
    model = get_model_info("claude-sonnet-4.6")
    assert fallback_chain(model, {}) == []
    derived = fallback_chain(model, {}, routed_by_task=True)
    assert 1 <= len(derived) <= 2
    assert all(get_model_info(name).provider != "anthropic" for name in derived)


def test_fallback_request_retargets_the_model_and_clamps_max_tokens():
    original = request(max_tokens=60000, temperature=0.3, cached_content="cachedContents/x")
    moved = fallback_request(original, "gpt-4.1")
    assert moved.model.name == "gpt-4.1"
    assert moved.max_tokens == get_model_info("gpt-4.1").max_output_tokens
    assert moved.temperature == 0.3 and moved.cached_content is None
    assert moved.messages == original.messages
    assert fallback_request(original, "o4-mini").temperature is None  # no sampling params


def test_fallback_request_refuses_a_model_that_cannot_serve_the_request():
    needs_reasoning = request(reasoning_effort="high")
    assert fallback_request(needs_reasoning, "gpt-4.1") is None
    assert fallback_request(needs_reasoning, "o4-mini") is not None
    with_tools = request(tools=(ToolSpec(name="t"),))
    assert fallback_request(with_tools, "gpt-4.1") is not None
    assert fallback_request(request(), "no-such-model") is None


def test_derived_request_ids_are_distinct_from_the_original_and_each_other():
    ids = {derived_request_id("r1", n) for n in (1, 2, 3)}
    assert len(ids) == 3 and "r1" not in ids


# --- RayExecutor's re-routing, with fake actors (no Ray started) ------------------------


class _Remote:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args):
        return self._fn(*args)

    def options(self, **_):
        return self


class FakeActor:
    """Answers like a provider actor, or raises ``error`` (calls are recorded)."""

    def __init__(self, name, error=None):
        self.name, self.error, self.calls = name, error, []
        self.execute = _Remote(self._execute)
        self.execute_stream = _Remote(self._stream)

    def _executed(self, request):
        from llm.executor import Executed
        from llm.providers.base import ProviderResult

        return Executed(result=ProviderResult(text=f"{self.name}:{request.model.name}"))

    async def _execute(self, request, ctx):
        self.calls.append((request.model.name, ctx.request_id))
        if self.error:
            raise self.error
        return self._executed(request)

    def _stream(self, request, ctx):
        self.calls.append((request.model.name, ctx.request_id))

        async def item(value):
            if isinstance(value, Exception):
                raise value
            return value

        async def refs():
            if self.error:
                yield item(self.error)
                return
            yield item("chunk")
            yield item(self._executed(request))

        return refs()


class FakeRuntime:
    namespace = "fake"
    is_started = True

    def __init__(self, actors, fallbacks, derived=None):
        routes = [route(a.name, provider=provider) for provider, a in actors]
        self.table = build_route_table(routes, fallbacks, version=1)
        self.actors = {a.name: a for _, a in actors}
        self.derived = derived or {}  # what the router derives for task-routed calls
        self.asked = []

    def router(self):
        async def routes():
            return self.table

        async def fallback(model, routed_by_task):
            self.asked.append((model, routed_by_task))
            return list(self.derived.get(model, ())) if routed_by_task else []

        return type("Router", (), {"routes": _Remote(routes), "fallback": _Remote(fallback)})()

    def executor(self):
        from actors.executor import RayExecutor

        executor = RayExecutor(self)
        executor._handles.update(self.actors)
        return executor


def ctx(request_id="r1", *, routed_by_task=False, **metadata):
    from llm.executor import CallContext

    return CallContext(request_id=request_id, routed_by_task=routed_by_task, metadata=metadata)


async def test_overload_goes_to_the_other_account_then_down_the_fallback_chain():
    from llm.exceptions import CircuitOpenError, ProviderOverloadedError

    busy = FakeActor("a1", ProviderOverloadedError("busy"))
    open_ = FakeActor("a2", CircuitOpenError("open"))
    google = FakeActor("g1")
    runtime = FakeRuntime(
        [("anthropic", busy), ("anthropic", open_), ("google", google)],
        {"claude-sonnet-4.6": ("gemini-3.1-pro-preview",)},
    )
    executed = await runtime.executor().execute(request(), ctx())
    assert executed.result.text == "g1:gemini-3.1-pro-preview"
    sent = sorted(busy.calls + open_.calls) + google.calls
    assert [model for model, _ in sent] == ["claude-sonnet-4.6"] * 2 + ["gemini-3.1-pro-preview"]
    ids = [rid for _, rid in sent]
    assert "r1" in ids and len(set(ids)) == 3  # each re-issue has its own id


async def test_other_errors_are_not_rerouted_and_reach_the_caller_unchanged():
    from llm.exceptions import InvalidRequestError

    bad = FakeActor("a1", InvalidRequestError("bad"))
    google = FakeActor("g1")
    runtime = FakeRuntime(
        [("anthropic", bad), ("google", google)],
        {"claude-sonnet-4.6": ("gemini-3.1-pro-preview",)},
    )
    with pytest.raises(InvalidRequestError):
        await runtime.executor().execute(request(), ctx())
    assert google.calls == []


async def test_without_a_chain_an_overload_is_raised_after_the_providers_actors():
    from llm.exceptions import ProviderOverloadedError

    busy = FakeActor("a1", ProviderOverloadedError("busy"))
    runtime = FakeRuntime([("anthropic", busy), ("google", FakeActor("g1"))], {})
    with pytest.raises(ProviderOverloadedError):
        await runtime.executor().execute(request(), ctx())
    assert len(busy.calls) == 1


async def test_a_stream_falls_back_before_its_first_chunk():
    from llm.exceptions import ProviderOverloadedError

    busy = FakeActor("a1", ProviderOverloadedError("busy"))
    google = FakeActor("g1")
    runtime = FakeRuntime(
        [("anthropic", busy), ("google", google)],
        {"claude-sonnet-4.6": ("gemini-3.1-pro-preview",)},
    )
    items = [item async for item in runtime.executor().execute_stream(request(), ctx())]
    assert items[0] == "chunk"
    assert items[-1].result.text == "g1:gemini-3.1-pro-preview"


async def test_only_task_routed_calls_ask_the_router_for_derived_fallbacks():
    from llm.exceptions import ProviderOverloadedError

    busy = FakeActor("a1", ProviderOverloadedError("busy"))
    openai = FakeActor("o1")
    runtime = FakeRuntime(
        [("anthropic", busy), ("openai", openai)], {}, derived={"claude-sonnet-4.6": ["gpt-5"]}
    )
    executor = runtime.executor()
    with pytest.raises(ProviderOverloadedError):
        await executor.execute(request(), ctx("named"))
    assert runtime.asked == []  # a named model never leaves its provider without a chain
    executed = await executor.execute(request(), ctx("task", routed_by_task=True))
    assert executed.result.text == "o1:gpt-5"
    assert runtime.asked == [("claude-sonnet-4.6", True)]
