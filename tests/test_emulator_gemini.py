"""Round trips through the real google-genai SDK against the Gemini wire module.

The first part serves ``gemini_wire`` from a tiny aiohttp app in this module (hand-made
results), so it tests only the wire format. The last part runs end to end against
``llm.emulator.server.Emulator`` and skips while that module cannot be imported.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from aiohttp import web
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from llm import tokens
from llm.emulator import gemini_wire as gw
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult, EmuToolCall

MODEL = "gemini-2.5-flash-lite"
KEY = "test-key-not-secret"
_GENERATE = re.compile(r"^/(v1|v1beta)/models/([^:]+):(\w+)$")
_CACHES = re.compile(r"^/(v1|v1beta)/cachedContents(?:/([^/]+))?$")
_NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
#: google-genai subclasses aiohttp.ClientSession, which aiohttp 3.14 warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- fake server


class FakeGemini:
    """Routes the SDK's calls to gemini_wire; ``answer(req)`` decides each reply."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.requests: list[EmuRequest] = []
        self.caches: dict[str, dict] = {}
        self.answer = default_answer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path_qs))
        body = await request.json() if request.can_read_body else {}
        try:
            if match := _GENERATE.match(request.path):
                return await self._model_call(request, match, body)
            if match := _CACHES.match(request.path):
                return self._cache_call(request.method, match.group(2), body)
        except EmuError as err:
            return self._error(err, model=None)
        raise web.HTTPNotFound()

    def _error(self, err: EmuError, model: str | None, version: str = "v1") -> web.Response:
        status, body, headers = gw.render_error(err, model=model, api_version=version)
        return web.json_response(body, status=status, headers=headers)

    async def _model_call(self, request: web.Request, match: re.Match, body: dict):
        version, model, action = match.groups()
        if action == "countTokens":
            req = gw.parse_count_tokens(body, model, request.headers)
            return web.json_response(gw.render_count_tokens(req, 0))
        stream = action == "streamGenerateContent"
        req = gw.parse_generate(body, model, request.headers, stream=stream)
        self.requests.append(req)
        outcome = self.answer(req)
        if isinstance(outcome, EmuError):
            return self._error(outcome, model, version)
        if not stream:
            return web.json_response(gw.render_generate(req, outcome))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for frame in gw.stream_generate(req, outcome):
            await response.write(frame)
        return response

    def _cache_call(self, method: str, cache_id: str | None, body: dict) -> web.Response:
        if method == "POST":
            model, segments, ttl, display = gw.parse_cached_content(body, now=_NOW)
            name = f"cachedContents/c{len(self.caches) + 1}"
            self.caches[name] = {
                "name": name,
                "model": model,
                "display_name": display,
                "create_time": _NOW,
                "update_time": _NOW,
                "expire_time": _NOW + timedelta(seconds=ttl),
                "total_tokens": sum(segment.tokens for segment in segments),
            }
            return web.json_response(gw.render_cached_content(self.caches[name]))
        if cache_id is None:
            listed = [gw.render_cached_content(info) for info in self.caches.values()]
            return web.json_response({"cachedContents": listed})
        info = self.caches.get(f"cachedContents/{cache_id}")
        if info is None:
            return self._error(EmuError(kind="not_found", message="CachedContent not found"), None)
        if method == "DELETE":
            del self.caches[info["name"]]
            return web.json_response({})
        if method == "PATCH":
            ttl = gw.cache_ttl_from(body, now=_NOW)
            info["expire_time"] = _NOW + timedelta(seconds=ttl or gw.DEFAULT_CACHE_TTL_S)
        return web.json_response(gw.render_cached_content(info))


def prompt_tokens(req: EmuRequest) -> int:
    return sum(segment.tokens for segment in req.segments)


def default_answer(req: EmuRequest) -> EmuResult:
    return EmuResult(
        request_id="resp-1",
        model_version=req.model,
        text="Paris is the capital.",
        tool_calls=(),
        thinking_text=None,
        input_tokens=prompt_tokens(req),
        output_tokens=6,
        text_chunks=("Paris is", " the capital."),
    )


def answer_with(**changes):
    return lambda req: dataclasses.replace(default_answer(req), **changes)


@pytest.fixture(scope="module")
async def fake():
    server = FakeGemini()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    server.base_url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
def client(fake):
    fake.calls.clear()
    fake.requests.clear()
    fake.answer = default_answer
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.base_url))


# --------------------------------------------------------------------------- generate


async def test_text_usage_and_thought_parts(client, fake):
    fake.answer = answer_with(
        thinking_text="Recall capitals.", reasoning_tokens=20, output_tokens=26, cached_tokens=8
    )
    config = types.GenerateContentConfig(
        system_instruction="Be terse.",
        max_output_tokens=100,
        thinking_config=types.ThinkingConfig(thinking_budget=256, include_thoughts=True),
    )
    response = await client.aio.models.generate_content(
        model=MODEL, contents="Capital of France?", config=config
    )
    req = fake.requests[-1]
    assert (req.reasoning_budget, req.include_thoughts, req.max_tokens) == (256, True, 100)
    assert response.text == "Paris is the capital."
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text == "Recall capitals."
    usage = response.usage_metadata
    assert usage.prompt_token_count == prompt_tokens(req)
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (6, 20)
    assert usage.cached_content_token_count == 8
    assert usage.total_token_count == prompt_tokens(req) + 26
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.response_id == "resp-1" and response.model_version == MODEL


async def test_function_calls_and_thought_signature(client, fake):
    calls = (EmuToolCall("c1", "get_weather", {"city": "Paris"}),)
    fake.answer = answer_with(text="", tool_calls=calls, finish="tool_calls", reasoning_tokens=3)
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="Weather for a city",
                parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode="ANY", allowed_function_names=["get_weather"]
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await client.aio.models.generate_content(
        model=MODEL, contents="Weather?", config=config
    )
    req = fake.requests[-1]
    assert req.tool_choice == "get_weather"
    assert req.tools[0].parameters == {"type": "object", "properties": {"city": {"type": "string"}}}
    call = response.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    assert response.candidates[0].content.parts[0].thought_signature
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


async def test_tool_result_history_with_image_round_trips(client, fake):
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (300).to_bytes(4, "big") + (250).to_bytes(4, "big")
    )
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part.from_text(text="Look"),
                types.Part.from_bytes(data=png + b"\xfb\xff", mime_type="image/png"),
            ],
        ),
        types.Content(
            role="model",
            parts=[
                types.Part(
                    function_call=types.FunctionCall(name="w", args={"q": 1}),
                    thought_signature=b"\xfb\xff\xfe",
                )
            ],
        ),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="w", response={"result": "ok"})],
        ),
    ]
    await client.aio.models.generate_content(model=MODEL, contents=contents)
    req = fake.requests[-1]
    assert req.after_tool_result is True and req.last_user_text == "Look"
    assert req.echo["image_tokens"] == 100
    assert [segment.tokens for segment in req.segments[1:]] == [
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Look") + 100,
        tokens.MESSAGE_OVERHEAD + tokens.count_tool_call_tokens("w", {"q": 1}),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens('{"result":"ok"}'),
    ]


class City(BaseModel):
    name: str
    population: int


async def test_structured_output_schema_reaches_the_request(client, fake):
    fake.answer = answer_with(text='{"name": "Paris", "population": 2100000}')
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City
    )
    response = await client.aio.models.generate_content(
        model=MODEL, contents="City?", config=config
    )
    schema = fake.requests[-1].json_schema
    assert schema["properties"]["population"]["type"] == "integer"
    jsonschema.validate(json.loads(response.text), schema)
    assert response.parsed == City(name="Paris", population=2100000)


async def test_stream_chunks_text_and_final_usage(client, fake):
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Capital?")
    chunks = [chunk async for chunk in stream]
    assert "".join(chunk.text or "" for chunk in chunks) == "Paris is the capital."
    assert [c.candidates[0].finish_reason for c in chunks][-1] == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 6
    assert fake.calls[-1] == ("POST", f"/v1/models/{MODEL}:streamGenerateContent?alt=sse")
    assert fake.requests[-1].stream is True


async def test_count_tokens_matches_the_prompt_count(client, fake):
    counted = await client.aio.models.count_tokens(model=MODEL, contents="hello there world")
    response = await client.aio.models.generate_content(model=MODEL, contents="hello there world")
    assert counted.total_tokens == response.usage_metadata.prompt_token_count
    hand = (
        tokens.REQUEST_OVERHEAD
        + tokens.MESSAGE_OVERHEAD
        + tokens.count_text_tokens("hello there world")
    )
    assert counted.total_tokens == hand
    assert fake.calls[0] == ("POST", f"/v1/models/{MODEL}:countTokens")


async def test_v1beta_paths(fake):
    options = types.HttpOptions(base_url=fake.base_url, api_version="v1beta")
    client = genai.Client(api_key=KEY, http_options=options)
    fake.calls.clear()
    await client.aio.models.generate_content(model=f"models/{MODEL}", contents="hi")
    assert fake.calls == [("POST", f"/v1beta/models/{MODEL}:generateContent")]


# --------------------------------------------------------------------------- caches


async def test_cached_content_lifecycle(client, fake):
    config = types.CreateCachedContentConfig(
        contents=["a long document"], system_instruction="sys", ttl="300s", display_name="doc"
    )
    cache = await client.aio.caches.create(model=MODEL, config=config)
    expected = 2 * tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("sys a long document")
    assert cache.usage_metadata.total_token_count == expected
    assert cache.model == f"models/{MODEL}" and cache.display_name == "doc"
    assert cache.expire_time == _NOW + timedelta(seconds=300)
    got = await client.aio.caches.get(name=cache.name)
    assert got.name == cache.name
    updated = await client.aio.caches.update(
        name=cache.name, config=types.UpdateCachedContentConfig(ttl="7200s")
    )
    assert updated.expire_time == _NOW + timedelta(hours=2)
    listed = [item.name async for item in await client.aio.caches.list()]
    assert cache.name in listed
    await client.aio.caches.delete(name=cache.name)
    assert [m for m, _ in fake.calls] == ["POST", "GET", "PATCH", "GET", "DELETE"]
    assert fake.calls[0][1] == "/v1/cachedContents"


async def test_generate_with_cached_content_reports_cached_tokens(client, fake):
    fake.answer = answer_with(cached_tokens=40, input_tokens=60)
    config = types.GenerateContentConfig(cached_content="cachedContents/c9")
    response = await client.aio.models.generate_content(model=MODEL, contents="q", config=config)
    assert fake.requests[-1].cached_content == "cachedContents/c9"
    assert response.usage_metadata.cached_content_token_count == 40


# --------------------------------------------------------------------------- errors


def failing_with(err: EmuError):
    return lambda req: err


async def test_rate_limit_error_reaches_the_sdk(client, fake):
    fake.answer = failing_with(EmuError(kind="rate_limit", message="x", retry_after_s=7.2))
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model=MODEL, contents="hi")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    details = info.value.details["error"]["details"]
    retry = [d for d in details if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "8s"}]
    assert "Please retry in 7.2s." in info.value.message


async def test_context_length_and_not_found_errors(client, fake):
    err = EmuError(kind="context_length", message="x", tokens_used=2_000_000, max_tokens=1_048_576)
    fake.answer = failing_with(err)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 400 and "input token count (2000000) exceeds" in info.value.message
    fake.answer = failing_with(EmuError(kind="not_found", message="x"))
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model="gemini-9-ultra", contents="hi")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    assert info.value.message.startswith("models/gemini-9-ultra is not found for API version v1")


async def test_overloaded_is_a_server_error(client, fake):
    fake.answer = failing_with(EmuError(kind="overloaded", message="x", retry_after_s=1))
    with pytest.raises(errors.ServerError) as info:
        await client.aio.models.generate_content(model=MODEL, contents="hi")
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")


async def test_invalid_body_is_a_400(client, fake):
    bad = types.Content(role="assistant", parts=[types.Part.from_text(text="hi")])
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model=MODEL, contents=[bad])
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "valid role" in info.value.message


# --------------------------------------------------------------------------- end to end

DOC = " ".join(f"clause{i % 97} covers topic{i % 89}." for i in range(1500))
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}


@pytest.fixture(scope="module")
async def emulator():
    server = pytest.importorskip("llm.emulator.server")
    config_cls = getattr(server, "EmulatorConfig", None)
    if config_cls is None:
        from llm.emulator.engine import EmulatorConfig as config_cls
    async with server.Emulator(config_cls(api_key=KEY)) as emu:
        yield emu


@pytest.fixture
def live(emulator):
    options = types.HttpOptions(base_url=emulator.base_url)
    return genai.Client(api_key=KEY, http_options=options)


async def test_e2e_generate_and_stream(live):
    response = await live.aio.models.generate_content(model=MODEL, contents="Tell me about Paris.")
    usage = response.usage_metadata
    assert response.text and usage.prompt_token_count > 0
    assert usage.candidates_token_count == tokens.count_text_tokens(response.text)
    stream = await live.aio.models.generate_content_stream(
        model=MODEL, contents="Tell me about Rome. [[emu:tokens=40]]"
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.text or "" for chunk in chunks)
    assert len(chunks) > 2 and text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == tokens.count_text_tokens(text)


async def test_e2e_count_tokens_equals_prompt_tokens(live):
    contents = "How many tokens is this sentence, exactly?"
    counted = await live.aio.models.count_tokens(model=MODEL, contents=contents)
    response = await live.aio.models.generate_content(model=MODEL, contents=contents)
    assert counted.total_tokens == response.usage_metadata.prompt_token_count


async def test_e2e_structured_output_validates(live):
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=WEATHER_SCHEMA
    )
    response = await live.aio.models.generate_content(
        model=MODEL, contents="Weather?", config=config
    )
    jsonschema.validate(json.loads(response.text), WEATHER_SCHEMA)


async def test_e2e_forced_function_call(live):
    declaration = types.FunctionDeclaration(
        name="get_weather", description="Weather", parameters_json_schema=WEATHER_SCHEMA
    )
    calling = types.FunctionCallingConfig(mode="ANY", allowed_function_names=["get_weather"])
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        tool_config=types.ToolConfig(function_calling_config=calling),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await live.aio.models.generate_content(model=MODEL, contents="Paris?", config=config)
    call = response.function_calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(call.args, WEATHER_SCHEMA)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


async def test_e2e_thinking_budget_reports_thoughts(live):
    thinking = types.ThinkingConfig(thinking_budget=512, include_thoughts=True)
    config = types.GenerateContentConfig(thinking_config=thinking)
    response = await live.aio.models.generate_content(model=MODEL, contents="Think.", config=config)
    usage = response.usage_metadata
    assert 0 < usage.thoughts_token_count <= 512
    assert any(part.thought for part in response.candidates[0].content.parts)
    expected = usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    assert usage.total_token_count == expected


async def test_e2e_implicit_cache_on_repeated_prefix(live):
    config = types.GenerateContentConfig(system_instruction=DOC)
    first = await live.aio.models.generate_content(model=MODEL, contents="Q1?", config=config)
    second = await live.aio.models.generate_content(model=MODEL, contents="Q2?", config=config)
    prefix = tokens.REQUEST_OVERHEAD + tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens(DOC)
    assert not first.usage_metadata.cached_content_token_count
    assert second.usage_metadata.cached_content_token_count == prefix


async def test_e2e_explicit_cache_create_and_use(live):
    cache = await live.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(contents=[DOC + " v2"], ttl="600s"),
    )
    size = cache.usage_metadata.total_token_count
    assert size == tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens(DOC + " v2")
    config = types.GenerateContentConfig(cached_content=cache.name)
    response = await live.aio.models.generate_content(
        model=MODEL, contents="Summary?", config=config
    )
    usage = response.usage_metadata
    assert usage.cached_content_token_count == size
    question = tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Summary?")
    assert usage.prompt_token_count == size + tokens.REQUEST_OVERHEAD + question
    await live.aio.caches.delete(name=cache.name)


async def test_e2e_faults_and_bad_key_map_to_sdk_errors(live, emulator):
    with pytest.raises(errors.ClientError) as info:
        await live.aio.models.generate_content(model=MODEL, contents="hi [[emu:fault=429]]")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    details = info.value.details["error"]["details"]
    assert any(d["@type"].endswith("RetryInfo") for d in details)
    with pytest.raises(errors.ServerError) as info:
        await live.aio.models.generate_content(model=MODEL, contents="hi [[emu:fault=503]]")
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")
    options = types.HttpOptions(base_url=emulator.base_url)
    stranger = genai.Client(api_key="wrong-key", http_options=options)
    with pytest.raises(errors.ClientError) as info:
        await stranger.aio.models.generate_content(model=MODEL, contents="hi")
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
