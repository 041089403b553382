"""The emulator engine's pure logic: schemas, directives, answers, caching, limits, faults.

Runs the engine directly (no HTTP) with an injected clock and a local model table, so it
needs neither the server nor the registry.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.emulator.engine import ConnectionFault, EmulatorConfig, Engine
from llm.emulator.engine_directives import parse_directives
from llm.emulator.engine_schema import instance_for, violating_instance
from llm.emulator.protocol import EmuError, EmuRequest, EmuTool, Segment
from llm.models import Capabilities, ModelInfo, PriceTier, Pricing
from llm.tokens import count_text_tokens

KEY = "engine-test-key"


def _model(name, provider, *, window=200_000, min_cache=1024, always_on=False, dated=()):
    return ModelInfo(
        name=name,
        provider=provider,
        api_id=name,
        aliases=dated,
        context_window=window,
        max_output_tokens=8192,
        pricing=Pricing(standard=PriceTier(input=Decimal(1), output=Decimal(2))),
        capabilities=Capabilities(
            caching=True, min_cacheable_tokens=min_cache, reasoning_always_on=always_on
        ),
    )


MODELS = {
    m.name: m
    for m in (
        _model("claude-test", "anthropic", dated=("claude-test-20250101",)),
        _model("claude-small", "anthropic", window=500),
        _model("gpt-test", "openai"),
        _model("o-test", "openai", always_on=True),
        _model("gemini-test", "google", min_cache=2048),
    )
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_engine(clock=None, **config) -> Engine:
    return Engine(EmulatorConfig(**config), clock=clock or Clock(), model_lookup=MODELS.get)


def req(text="Tell me about Paris", *, model="claude-test", provider="anthropic", segs=(), **kw):
    api = {"anthropic": "messages", "openai": "chat", "google": "gemini"}[provider]
    segments = (*segs, Segment("user|" + text, count_text_tokens(text) + 4))
    return EmuRequest(
        provider=provider, api=api, model=model, segments=segments, last_user_text=text, **kw
    )


def block(name: str, tokens: int, ttl=None) -> Segment:
    return Segment(f"block|{name}", tokens, ttl)


# ------------------------------------------------------------------------ schemas
SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 3, "maxLength": 5},
            "when": {"type": "string", "format": "date-time"},
            "tags": {
                "type": "array",
                "items": {"enum": ["x", "y", "z"]},
                "minItems": 2,
                "maxItems": 2,
            },
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "kind": {"const": "fixed"},
            "maybe": {"type": ["string", "null"]},
            "n": {"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 5},
        },
        "required": ["name", "when", "tags", "score", "kind", "maybe", "n"],
        "additionalProperties": False,
    },
    {
        "$defs": {
            "node": {"type": "object", "properties": {"v": {"type": "boolean"}}, "required": ["v"]}
        },
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 1},
            "choice": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "one": {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "boolean"}]},
        },
        "required": ["items", "choice", "one"],
    },
    {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "minItems": 3},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_documents_validate(schema):
    for seed in range(5):
        jsonschema.validate(instance_for(schema, random.Random(seed)), schema)


@pytest.mark.parametrize("schema", SCHEMAS[:3])
def test_violating_documents_fail_validation(schema):
    doc = violating_instance(schema, random.Random(1))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def _schemas() -> st.SearchStrategy[dict]:
    leaves = st.one_of(
        st.builds(
            lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span},
            st.integers(0, 10),
            st.integers(0, 10),
        ),
        st.builds(
            lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
            st.integers(-50, 50),
            st.integers(0, 20),
        ),
        st.just({"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 9}),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3).map(
            lambda v: {"enum": v}
        ),
        st.sampled_from(sorted({"date", "email", "uuid", "uri"})).map(
            lambda f: {"type": "string", "format": f}
        ),
    )

    def extend(children: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
        objects = st.dictionaries(
            st.text("abcdef", min_size=1, max_size=5), children, max_size=4
        ).flatmap(
            lambda props: st.builds(
                lambda req, extra: {
                    "type": "object",
                    "properties": props,
                    "required": req,
                    "additionalProperties": extra,
                },
                st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
                st.booleans(),
            )
        )
        arrays = st.builds(
            lambda items, lo, span: {
                "type": "array",
                "items": items,
                "minItems": lo,
                "maxItems": lo + span,
            },
            children,
            st.integers(0, 3),
            st.integers(0, 3),
        )
        unions = st.lists(children, min_size=1, max_size=3).map(lambda opts: {"anyOf": opts})
        nullable = (
            children.filter(lambda s: s.get("type") not in (None, "null"))
            .filter(lambda s: isinstance(s["type"], str))
            .map(lambda s: {**s, "type": [s["type"], "null"]})
        )
        return st.one_of(objects, arrays, unions, nullable)

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas(), seed=st.integers(0, 2**16))
def test_generated_documents_validate_for_random_schemas(schema, seed):
    jsonschema.validate(instance_for(schema, random.Random(seed)), schema)


# --------------------------------------------------------------------- directives
def test_directives_are_parsed_and_stripped():
    found, text = parse_directives(
        "Hello [[emu:fault=429,times=2]] world [[emu:tokens=7,latency_ms=250]] [[emu:invalid_json,times=1]]"
    )
    assert text == "Hello world"
    assert (found.fault, found.fault_times, found.tokens, found.latency_ms) == ("429", 2, 7, 250.0)
    assert found.invalid_json and found.invalid_json_times == 1
    assert found.fault_active(2) and not found.fault_active(3)
    assert found.invalid_json_active(1) and not found.invalid_json_active(2)


def test_unknown_directives_are_ignored_but_stripped():
    found, text = parse_directives("x [[emu:fault=teapot,colour=blue]] y")
    assert found.fault is None and text == "x y"


# ------------------------------------------------------------------------ answers
async def test_tokens_directive_sets_exact_answer_length_and_strips_markers():
    result = await make_engine().generate(req("About Rome [[emu:tokens=33]]"), KEY)
    assert result.output_tokens == 33 == count_text_tokens(result.text)
    assert "emu:" not in result.text and "Rome" in result.text
    assert "".join(result.text_chunks) == result.text and len(result.text_chunks) > 3


async def test_answers_are_deterministic_per_seed():
    first = await make_engine(seed=1).generate(req(), KEY)
    again = await make_engine(seed=1).generate(req(), KEY)
    other = await make_engine(seed=2).generate(req(), KEY)
    assert first.text == again.text
    assert first.text != other.text
    assert 20 <= first.output_tokens <= 80
    assert first.model_version == "claude-test-20250101"


async def test_max_tokens_caps_the_answer_with_length_finish():
    result = await make_engine().generate(req("hi [[emu:tokens=50]]", max_tokens=10), KEY)
    assert result.output_tokens == 10 and result.finish == "length"


async def test_structured_output_validates_and_invalid_json_directive_breaks_it_once():
    schema = SCHEMAS[0]
    engine = make_engine()
    good = await engine.generate(req("json please", json_schema=schema), KEY)
    jsonschema.validate(json.loads(good.text), schema)
    bad_req = req("json please [[emu:invalid_json,times=1]]", json_schema=schema)
    bad = await engine.generate(bad_req, KEY)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(bad.text), schema)
    retried = await engine.generate(bad_req, KEY)
    jsonschema.validate(json.loads(retried.text), schema)


WEATHER = EmuTool(
    "get_weather",
    "Weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def test_forced_tool_call_arguments_validate():
    result = await make_engine().generate(req("anything", tools=(WEATHER,), tool_choice="any"), KEY)
    (call,) = result.tool_calls
    assert call.name == "get_weather" and result.finish == "tool_calls"
    assert len(call.id) == 24 and call.id.isalnum()
    jsonschema.validate(call.arguments, WEATHER.parameters)


async def test_auto_tool_choice_calls_named_tool_only_before_a_tool_result():
    engine = make_engine()
    named = await engine.generate(req("use get_weather for Oslo", tools=(WEATHER,)), KEY)
    plain = await engine.generate(req("say hello", tools=(WEATHER,)), KEY)
    after = await engine.generate(
        req("use get_weather", tools=(WEATHER,), after_tool_result=True), KEY
    )
    assert named.tool_calls and not plain.tool_calls and not after.tool_calls
    assert after.finish == "stop"


async def test_reasoning_tokens_by_effort_budget_and_always_on():
    engine = make_engine()
    low = await engine.generate(req("q", reasoning_effort="low", max_tokens=8000), KEY)
    capped = await engine.generate(req("q", reasoning_effort="high", max_tokens=1000), KEY)
    budget = await engine.generate(req("q", reasoning_budget=2000, max_tokens=8000), KEY)
    always = await engine.generate(req("q", model="o-test", provider="openai"), KEY)
    plain = await engine.generate(req("q", model="gpt-test", provider="openai"), KEY)
    assert 384 <= low.reasoning_tokens <= 640
    assert capped.reasoning_tokens == 500  # over max_tokens: reasoning gets half of it
    assert capped.output_tokens <= 1000
    assert 1200 <= budget.reasoning_tokens <= 1800
    assert 1536 <= always.reasoning_tokens <= 2560 and always.thinking_text is None
    assert plain.reasoning_tokens == 0
    assert budget.output_tokens == budget.reasoning_tokens + count_text_tokens(budget.text)
    assert budget.thinking_text  # Anthropic always returns a thinking summary


# ------------------------------------------------------------------------- errors
async def test_authentication_is_required_and_checked():
    with pytest.raises(EmuError) as missing:
        await make_engine().generate(req(), None)
    with pytest.raises(EmuError) as wrong:
        await make_engine(api_key="right").generate(req(), "wrong")
    assert missing.value.kind == wrong.value.kind == "authentication"
    assert "wrong" not in wrong.value.message and missing.value.request_id.startswith("req_")


async def test_unknown_model_and_provider_mismatch_are_not_found():
    with pytest.raises(EmuError) as unknown:
        await make_engine().generate(req(model="claude-nope"), KEY)
    with pytest.raises(EmuError) as mismatch:
        await make_engine().generate(req(model="gpt-test"), KEY)
    assert unknown.value.kind == mismatch.value.kind == "not_found"
    assert unknown.value.message == "model: claude-nope"


async def test_context_overflow_reports_numbers():
    text = "word " * 600
    with pytest.raises(EmuError) as exc:
        await make_engine().generate(req(text, model="claude-small"), KEY)
    used = count_text_tokens(text) + 4
    assert exc.value.kind == "context_length"
    assert (exc.value.tokens_used, exc.value.max_tokens) == (used, 500)
    assert exc.value.message == f"prompt is too long: {used} tokens > 500 maximum"


async def test_fault_directive_with_times_fails_only_first_attempts():
    engine = make_engine()
    request = req("hi [[emu:fault=429,times=2]]")
    for _ in range(2):
        with pytest.raises(EmuError) as exc:
            await engine.generate(request, KEY)
        assert exc.value.kind == "rate_limit" and exc.value.retry_after_s == 1.0
    assert (await engine.generate(request, KEY)).text
    with pytest.raises(ConnectionFault) as reset:
        await engine.generate(req("x [[emu:fault=reset]]"), KEY)
    assert reset.value.mode == "reset"
    with pytest.raises(EmuError) as overloaded:
        await engine.generate(req("x [[emu:fault=529]]"), KEY)
    assert overloaded.value.kind == "overloaded"


async def _fault_pattern(seed: int) -> list[str]:
    engine = make_engine(fault_rate=0.5, seed=seed)
    pattern = []
    for i in range(40):
        try:
            engine.prepare(req(f"question {i}"), KEY)
            pattern.append("ok")
        except EmuError as err:
            pattern.append(err.kind)
        except ConnectionFault as fault:
            pattern.append(fault.mode)
    return pattern


async def test_fault_rate_is_deterministic_per_seed():
    first, again, other = await _fault_pattern(7), await _fault_pattern(7), await _fault_pattern(8)
    assert first == again and first != other
    assert 8 <= sum(1 for p in first if p != "ok") <= 32


# ----------------------------------------------------------------------- caching
SYSTEM_BP = block("system", 1500, "5m")


async def test_anthropic_cache_write_then_read():
    engine = make_engine()
    first = await engine.generate(req("a", segs=(SYSTEM_BP,)), KEY)
    second = await engine.generate(req("b", segs=(SYSTEM_BP,)), KEY)
    assert (first.cached_tokens, first.cache_write_tokens) == (0, 1500)
    assert (second.cached_tokens, second.cache_write_tokens) == (1500, 0)
    other_key = await engine.generate(req("b", segs=(SYSTEM_BP,)), "other-key")
    assert other_key.cached_tokens == 0


async def test_anthropic_prefix_below_minimum_is_not_cached():
    engine = make_engine()
    small = block("system", 500, "5m")
    for text in ("a", "b"):
        result = await engine.generate(req(text, segs=(small,)), KEY)
        assert (result.cached_tokens, result.cache_write_tokens) == (0, 0)


async def test_anthropic_cache_is_readable_only_after_the_writer_started():
    clock = Clock()
    engine = make_engine(clock)
    engine.prepare(req("writer [[emu:latency_ms=2000]]", segs=(SYSTEM_BP,)), KEY)
    clock.now += 1.0  # the writer has not produced its first token yet
    early = engine.prepare(req("early", segs=(SYSTEM_BP,)), KEY).result
    clock.now += 1.5
    late = engine.prepare(req("late", segs=(SYSTEM_BP,)), KEY).result
    assert (early.cached_tokens, early.cache_write_tokens) == (0, 1500)
    assert (late.cached_tokens, late.cache_write_tokens) == (1500, 0)


async def test_anthropic_write_split_by_ttl_and_expiry_and_refresh():
    clock = Clock()
    engine = make_engine(clock)
    tools = block("tools", 1200, "1h")
    system = block("system", 300, "5m")
    first = engine.prepare(req("a", segs=(tools, system)), KEY).result
    assert (first.cache_write_tokens, first.cache_write_1h_tokens) == (1500, 1200)
    clock.now += 240
    refreshed = engine.prepare(req("b", segs=(tools, system)), KEY).result
    assert refreshed.cached_tokens == 1500
    clock.now += 240  # 8 minutes after the write, 4 after the refreshing read
    assert engine.prepare(req("c", segs=(tools, system)), KEY).result.cached_tokens == 1500
    clock.now += 400  # the 5m entry expired; the 1h one is still there
    partial = engine.prepare(req("d", segs=(tools, system)), KEY).result
    assert (partial.cached_tokens, partial.cache_write_tokens) == (1200, 300)


async def test_openai_automatic_cache_rounds_to_128_steps():
    engine = make_engine()
    prefix = block("system", 1300)
    first = engine.prepare(req("a", model="gpt-test", provider="openai", segs=(prefix,)), KEY)
    second = engine.prepare(req("b", model="gpt-test", provider="openai", segs=(prefix,)), KEY)
    assert first.result.cached_tokens == 0
    assert second.result.cached_tokens == 1024 + 2 * 128
    assert second.result.cache_write_tokens == 0


async def test_gemini_implicit_cache_uses_model_minimum():
    engine = make_engine()
    small, big = block("small", 1500), block("big", 2500)
    cases = (((small,), 0), ((small,), 0), ((big,), 0), ((big,), 2500))
    for i, (segs, expected) in enumerate(cases):
        request = req(f"q{i}", model="gemini-test", provider="google", segs=segs)
        result = engine.prepare(request, KEY)
        assert result.result.cached_tokens == expected


async def test_gemini_explicit_cache_lifecycle_and_counting():
    engine = make_engine()
    segs = (block("doc", 3000),)
    with pytest.raises(EmuError) as small:
        engine.create_cached_content(KEY, "models/gemini-test", (block("tiny", 10),), 60, None)
    assert small.value.kind == "invalid_request"
    info = engine.create_cached_content(KEY, "models/gemini-test", segs, 600, "doc")
    assert info["total_tokens"] == 3000 and info["model"] == "models/gemini-test"
    assert [i["name"] for i in engine.list_cached_contents(KEY)] == [info["name"]]
    assert engine.list_cached_contents("other") == []
    request = req("q", model="gemini-test", provider="google", cached_content=info["name"])
    result = await engine.generate(request, KEY)
    assert result.cached_tokens == 3000
    assert result.input_tokens == 3000 + request.segments[0].tokens == engine.count(request, KEY)
    updated = engine.update_cached_content_ttl(KEY, info["name"], 7200)
    assert updated["expire_time"] > info["expire_time"]
    engine.delete_cached_content(KEY, info["name"])
    with pytest.raises(EmuError) as gone:
        engine.get_cached_content(KEY, info["name"])
    assert gone.value.kind == "not_found"


# -------------------------------------------------------------------- rate limits
async def test_request_bucket_refills_continuously():
    clock = Clock()
    engine = make_engine(clock, rpm=2, burst_s=60)  # a whole minute may burst
    engine.prepare(req("a"), KEY)
    result = engine.prepare(req("b"), KEY).result
    assert result.limits["requests_limit"] == 2 and result.limits["requests_remaining"] == 0
    with pytest.raises(EmuError) as exc:
        engine.prepare(req("c"), KEY)
    assert exc.value.kind == "rate_limit" and exc.value.retry_after_s == pytest.approx(30.0)
    assert exc.value.limits["requests_remaining"] == 0
    clock.now += 29.0
    with pytest.raises(EmuError):
        engine.prepare(req("c"), KEY)
    clock.now += 1.0
    assert engine.prepare(req("c"), KEY).result.text
    assert engine.prepare(req("d"), "another-key").result.text  # buckets are per key


async def test_input_bucket_ignores_anthropic_cache_reads():
    clock = Clock()
    engine = make_engine(clock, itpm=3000, burst_s=60)
    engine.prepare(req("a", segs=(SYSTEM_BP,)), KEY)  # ~1500 uncached
    engine.prepare(req("b", segs=(SYSTEM_BP,)), KEY)  # cache read: only the user turn counts
    assert engine.prepare(req("c", segs=(SYSTEM_BP,)), KEY).result.cached_tokens == 1500
    openai_engine = make_engine(clock, itpm=3000, burst_s=60)
    openai_engine.prepare(req("a", model="gpt-test", provider="openai", segs=(SYSTEM_BP,)), KEY)
    with pytest.raises(EmuError) as exc:
        openai_engine.prepare(req("b", model="gpt-test", provider="openai", segs=(SYSTEM_BP,)), KEY)
    assert exc.value.kind == "rate_limit"


async def test_output_bucket_may_go_negative_and_then_blocks():
    clock = Clock()
    engine = make_engine(clock, otpm=60, burst_s=60)
    engine.prepare(req("a [[emu:tokens=90]]"), KEY)
    with pytest.raises(EmuError) as exc:
        engine.prepare(req("b"), KEY)
    assert exc.value.retry_after_s == pytest.approx(30.0)
    clock.now += 30.0
    assert engine.prepare(req("b"), KEY).result.limits["output_tokens_remaining"] >= 0


async def test_unconfigured_limits_report_a_default_tier_without_enforcing_it():
    engine = make_engine()
    limits = engine.prepare(req(), KEY).result.limits
    assert (limits["requests_limit"], limits["requests_remaining"]) == (4000, 3999)
    assert limits["input_tokens_limit"] == 2_000_000
    assert limits["output_tokens_limit"] == 400_000
    for index in range(4100):  # past the reported budget: still admitted, remaining at 0
        result = engine.prepare(req(f"q{index}"), KEY).result
    assert result.limits["requests_remaining"] == 0
    openai_limits = engine.prepare(req(model="gpt-test", provider="openai"), KEY).result.limits
    assert openai_limits["requests_limit"] == 10_000  # its own account, its own tier
    assert openai_limits["tokens_limit"] == 2_000_000
    assert openai_limits["input_tokens_limit"] is None
    gemini = engine.prepare(req(model="gemini-test", provider="google"), KEY).result.limits
    assert all(value is None for value in gemini.values())


# ------------------------------------------------------------------------- timing
async def test_generate_sleeps_latency_plus_token_time():
    slept = []

    async def sleep(seconds):
        slept.append(seconds)

    engine = Engine(
        EmulatorConfig(latency_ms=200, tokens_per_s=100),
        clock=Clock(),
        sleep=sleep,
        model_lookup=MODELS.get,
    )
    await engine.generate(req("x [[emu:tokens=50]]"), KEY)
    await engine.generate(req("y [[emu:tokens=10,latency_ms=1000]]"), KEY)
    assert slept == [pytest.approx(0.2 + 0.5), pytest.approx(1.0 + 0.1)]


async def test_unsatisfiable_schema_is_an_invalid_request():
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}
    with pytest.raises(EmuError) as exc:
        await make_engine().generate(req("json", json_schema=schema), KEY)
    assert exc.value.kind == "invalid_request"
