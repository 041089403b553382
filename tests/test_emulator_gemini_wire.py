"""Pure tests of the emulator's Gemini wire module (no HTTP): parsing, counting, rendering."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime, timedelta

import pytest

from llm import tokens
from llm.emulator import gemini_wire as gw
from llm.emulator.protocol import EmuError, EmuResult, EmuToolCall

MODEL = "gemini-2.5-flash-lite"
#: A 300x250 PNG header (100 image tokens) whose base64 differs between the two alphabets.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 300, 250) + b"\xfb\xff\xfe" * 4
PNG_STD = base64.b64encode(PNG).decode()
PNG_URL = base64.urlsafe_b64encode(PNG).decode().rstrip("=")

WEATHER_OPENAPI = {
    "type": "OBJECT",
    "properties": {
        "city": {"type": "STRING", "description": "City name"},
        "days": {"type": "INTEGER", "nullable": True},
        "units": {"type": "STRING", "enum": ["C", "F"]},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "min_items": 1},
    },
    "required": ["city"],
    "propertyOrdering": ["city", "days", "units", "tags"],
}
WEATHER_JSON = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": ["integer", "null"]},
        "units": {"type": "string", "enum": ["C", "F"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["city"],
}


def camel_body() -> dict:
    return {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Describe this"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG_STD}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": "18C"}}}
                ],
            },
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "Be terse."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "w",
                        "parametersJsonSchema": WEATHER_JSON,
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "cachedContent": None,
        "generationConfig": {
            "maxOutputTokens": 1024,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 512},
        },
    }


def snake_body() -> dict:
    body = camel_body()
    body["contents"][0]["parts"][1] = {"inline_data": {"mime_type": "image/png", "data": PNG_URL}}
    body["contents"][1]["parts"][0] = {
        "function_call": {"name": "get_weather", "args": {"city": "Paris"}},
        "thought_signature": "c2ln",
    }
    body["contents"][2]["parts"][0] = {
        "function_response": {"name": "get_weather", "response": {"temp": "18C"}}
    }
    body["system_instruction"] = body.pop("systemInstruction")
    body["tools"] = [
        {
            "function_declarations": [
                {"name": "get_weather", "description": "w", "parameters_json_schema": WEATHER_JSON}
            ]
        }
    ]
    body["tool_config"] = {"function_calling_config": {"mode": "ANY"}}
    body.pop("toolConfig")
    body["generation_config"] = {
        "max_output_tokens": 1024,
        "stop_sequences": ["END"],
        "response_mime_type": "application/json",
        "response_json_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "thinking_config": {"include_thoughts": True, "thinking_budget": 512},
    }
    body.pop("generationConfig")
    return body


def result(**overrides) -> EmuResult:
    values = dict(
        request_id="resp-1",
        model_version=MODEL,
        text="Paris is sunny.",
        tool_calls=(),
        thinking_text=None,
        input_tokens=120,
        output_tokens=30,
    )
    values.update(overrides)
    return EmuResult(**values)


# --------------------------------------------------------------------------- parsing


def test_camel_and_snake_spellings_parse_to_the_same_request():
    camel = gw.parse_generate(camel_body(), MODEL, {})
    snake = gw.parse_generate(snake_body(), f"models/{MODEL}", {})
    assert camel == snake
    assert camel.model == MODEL
    assert camel.max_tokens == 1024
    assert camel.stop_sequences == ("END",)
    assert camel.reasoning_budget == 512
    assert camel.include_thoughts is True
    assert camel.tool_choice == "any"
    assert camel.after_tool_result is True
    assert camel.tools[0].parameters == WEATHER_JSON


def test_both_base64_alphabets_count_and_key_the_same():
    assert PNG_STD != PNG_URL.ljust(len(PNG_STD), "=")  # the alphabets really differ here
    bodies = [
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": data}}]}]}
        for data in (PNG_STD, PNG_URL)
    ]
    std, url = (gw.parse_generate(body, MODEL, {}) for body in bodies)
    assert std.segments == url.segments
    assert std.segments[-1].tokens == tokens.MESSAGE_OVERHEAD + 100


def test_token_counts_follow_the_counting_rules():
    req = gw.parse_generate(camel_body(), MODEL, {})
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    expected = [
        tokens.REQUEST_OVERHEAD,
        tokens.count_tool_tokens("get_weather", "w", WEATHER_JSON),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Be terse."),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Describe this") + 100,
        tokens.MESSAGE_OVERHEAD + tokens.count_tool_call_tokens("get_weather", {"city": "Paris"}),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens('{"temp":"18C"}'),
        tokens.count_schema_tokens(schema),
    ]
    assert [segment.tokens for segment in req.segments] == expected
    assert req.echo["image_tokens"] == 100
    assert gw.render_count_tokens(req, 0)["totalTokens"] == sum(expected)


def test_segment_keys_change_with_content_and_schema_comes_last():
    base = gw.parse_generate(camel_body(), MODEL, {})
    changed_body = camel_body()
    changed_body["contents"][0]["parts"][0]["text"] = "Describe that"
    changed = gw.parse_generate(changed_body, MODEL, {})
    assert base.segments[:3] == changed.segments[:3]
    assert base.segments[3].key != changed.segments[3].key
    assert base.segments[-1].key.startswith("schema:")


def test_openapi_schema_is_converted_to_json_schema():
    assert gw.openapi_to_json_schema(WEATHER_OPENAPI) == WEATHER_JSON


def test_response_schema_and_declaration_parameters_are_converted():
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "w", "parameters": WEATHER_OPENAPI}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": WEATHER_OPENAPI,
        },
    }
    req = gw.parse_generate(body, MODEL, {})
    assert req.json_schema == WEATHER_JSON
    assert req.tools[0].parameters == WEATHER_JSON
    assert req.segments[-1].tokens == tokens.count_schema_tokens(WEATHER_JSON)


def test_json_mime_type_without_schema_asks_for_an_object_and_adds_no_segment():
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "generationConfig": {"responseMimeType": "application/json"},
    }
    req = gw.parse_generate(body, MODEL, {})
    assert req.json_schema == {"type": "object"}
    assert [s.key for s in req.segments][-1].startswith("content:")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mode": "ANY", "allowedFunctionNames": ["w"]}, "w"),
        ({"mode": "ANY", "allowed_function_names": ["w", "v"]}, "any"),
        ({"mode": "NONE"}, "none"),
        ({"mode": "AUTO"}, "auto"),
        ({}, "auto"),
    ],
)
def test_function_calling_mode_maps_to_tool_choice(config, expected):
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "toolConfig": {"functionCallingConfig": config},
    }
    assert gw.parse_generate(body, MODEL, {}).tool_choice == expected


def test_thinking_controls():
    def parse(config: dict):
        body = {
            "contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"thinkingConfig": config},
        }
        return gw.parse_generate(body, MODEL, {})

    off = parse({"thinkingBudget": 0})
    assert off.reasoning_budget == 0 and off.echo["thinking_off"] is True
    level = parse({"thinking_level": "LOW"})
    assert level.reasoning_effort == "low" and "thinking_off" not in level.echo
    assert parse({"thinkingBudget": -1}).reasoning_budget is None


def test_last_user_text_keeps_directives_and_skips_tool_results():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "weather? [[emu:tokens=7]]"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"r": 1}}}]},
        ]
    }
    req = gw.parse_generate(body, MODEL, {})
    assert req.last_user_text == "weather? [[emu:tokens=7]]"
    assert req.after_tool_result is True


def test_count_tokens_accepts_both_body_forms():
    contents = [{"role": "user", "parts": [{"text": "hello world"}]}]
    plain = gw.parse_count_tokens({"contents": contents}, MODEL, {})
    wrapped = gw.parse_count_tokens(
        {"generateContentRequest": {"model": f"models/{MODEL}", "contents": contents}}, MODEL, {}
    )
    assert plain.segments == wrapped.segments
    rendered = gw.render_count_tokens(plain, 50)
    total = (
        tokens.REQUEST_OVERHEAD + tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("hello world")
    )
    assert rendered["totalTokens"] == total + 50
    assert rendered["cachedContentTokenCount"] == 50
    assert "cachedContentTokenCount" not in gw.render_count_tokens(plain, 0)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"contents": []}, "contents is not specified"),
        ({}, "contents is not specified"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": "hello"}, "must be a list"),
        (
            {"contents": [{"parts": [{"inlineData": {"data": "***", "mimeType": "image/png"}}]}]},
            "Base64",
        ),
        ({"contents": [{"parts": [{"unknownThing": 1}]}]}, "oneof"),
        (
            {"contents": [{"parts": [{"functionResponse": {"name": "w", "response": "x"}}]}]},
            "object",
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}},
            "positive",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "cachedContent": "cachedContents/a",
                "tools": [],
            },
            "CachedContent can not be used",
        ),
    ],
)
def test_malformed_bodies_raise_invalid_request(body, fragment):
    with pytest.raises(EmuError) as info:
        gw.parse_generate(body, MODEL, {})
    assert info.value.kind == "invalid_request"
    assert fragment in info.value.message


def test_api_key_from_header_or_query():
    assert gw.api_key_from({"X-Goog-Api-Key": "k1"}, {}) == "k1"
    assert gw.api_key_from({}, {"key": "k2"}) == "k2"
    assert gw.api_key_from({"x-goog-api-key": ""}, {}) is None


# --------------------------------------------------------------------------- cached contents


def test_parse_cached_content_ttl_forms_and_segments():
    body = {
        "model": f"models/{MODEL}",
        "displayName": "doc",
        "ttl": "300s",
        "contents": [{"role": "user", "parts": [{"text": "big doc"}]}],
        "systemInstruction": {"parts": [{"text": "sys"}]},
    }
    model, segments, ttl, name = gw.parse_cached_content(body)
    assert (model, ttl, name) == (MODEL, 300.0, "doc")
    assert [s.tokens for s in segments] == [
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("sys"),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("big doc"),
    ]
    now = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    expiring = {
        "model": MODEL,
        "contents": body["contents"],
        "expire_time": "2026-11-24T17:00:00.5Z",
    }
    assert gw.parse_cached_content(expiring, now=now)[2] == 3600.5
    assert gw.parse_cached_content({"model": MODEL, "contents": body["contents"]})[2] == 3600.0
    with pytest.raises(EmuError):
        gw.parse_cached_content({"contents": body["contents"]})


def test_cache_update_ttl_forms():
    now = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    assert gw.cache_ttl_from({"ttl": "7200s"}, now=now) == 7200.0
    # google-genai 3.6.1 sends expireTime with a +00:00 offset; the API itself uses Z/nanos.
    assert gw.cache_ttl_from({"expireTime": "2026-11-24T17:00:00+00:00"}, now=now) == 3600.0
    assert gw.cache_ttl_from({"expireTime": "2026-11-24T16:00:01.000000001Z"}, now=now) == 1.0
    assert gw.cache_ttl_from({}, now=now) is None
    for bad in ({"ttl": "soon"}, {"expireTime": "2026-11-24T15:00:00Z"}):
        with pytest.raises(EmuError):
            gw.cache_ttl_from(bad, now=now)


def test_render_cached_content_uses_rfc3339_z():
    created = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    info = {
        "name": "cachedContents/abc",
        "model": MODEL,
        "display_name": "doc",
        "create_time": created,
        "update_time": created,
        "expire_time": created + timedelta(hours=1),
        "total_tokens": 4096,
    }
    assert gw.render_cached_content(info) == {
        "name": "cachedContents/abc",
        "model": f"models/{MODEL}",
        "displayName": "doc",
        "createTime": "2026-11-24T16:00:00.000000Z",
        "updateTime": "2026-11-24T16:00:00.000000Z",
        "expireTime": "2026-11-24T17:00:00.000000Z",
        "usageMetadata": {"totalTokenCount": 4096},
    }


# --------------------------------------------------------------------------- rendering


def simple_request(**config):
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": config}
    return gw.parse_generate(body, MODEL, {})


def test_usage_math_with_thoughts_and_cache():
    req = simple_request(thinkingConfig={"includeThoughts": True})
    res = result(thinking_text="let me think", reasoning_tokens=12, cached_tokens=40)
    body = gw.render_generate(req, res)
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == 120
    assert usage["candidatesTokenCount"] == 18
    assert usage["thoughtsTokenCount"] == 12
    assert usage["cachedContentTokenCount"] == 40
    assert usage["totalTokenCount"] == 150
    parts = body["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "let me think", "thought": True}
    # after thinking, the answer's part carries the thought signature (as recorded)
    assert parts[1]["text"] == "Paris is sunny." and parts[1]["thoughtSignature"]
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert (body["modelVersion"], body["responseId"]) == (MODEL, "resp-1")


def test_zero_counters_are_omitted_and_thoughts_hidden_unless_asked():
    body = gw.render_generate(simple_request(), result(thinking_text="secret", finish="length"))
    usage = body["usageMetadata"]
    assert "thoughtsTokenCount" not in usage and "cachedContentTokenCount" not in usage
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Paris is sunny."}]
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_function_calls_carry_a_valid_signature_and_finish_with_stop():
    calls = (EmuToolCall("c1", "w", {"city": "Paris"}), EmuToolCall("c2", "w", {"city": "Rome"}))
    body = gw.render_generate(
        simple_request(), result(text="", tool_calls=calls, finish="tool_calls")
    )
    parts = body["candidates"][0]["content"]["parts"]
    assert [p["functionCall"] for p in parts] == [
        {"name": "w", "args": {"city": "Paris"}},
        {"name": "w", "args": {"city": "Rome"}},
    ]
    assert base64.b64decode(parts[0]["thoughtSignature"], validate=True)
    assert "thoughtSignature" not in parts[1]
    assert body["candidates"][0]["finishReason"] == "STOP"


def decode_frames(frames: list[bytes]) -> list[dict]:
    out = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\r\n\r\n")
        out.append(json.loads(frame[len(b"data: ") : -4]))
    return out


def test_stream_chunks_are_incremental_with_cumulative_usage():
    req = simple_request(thinkingConfig={"includeThoughts": True})
    res = result(
        text="Paris is sunny.",
        text_chunks=("Paris", " is sunny."),
        thinking_text="hmm",
        reasoning_tokens=5,
        output_tokens=9,
        tool_calls=(EmuToolCall("c1", "w", {}),),
    )
    chunks = decode_frames(gw.stream_generate(req, res))
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts[0] == [{"text": "hmm", "thought": True}]
    assert parts[1:3] == [[{"text": "Paris"}], [{"text": " is sunny."}]]
    assert parts[3][0]["functionCall"] == {"name": "w", "args": {}}
    assert parts[4] == [{"text": ""}]
    counts = [c["usageMetadata"].get("candidatesTokenCount", 0) for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 4
    assert all(c["usageMetadata"]["thoughtsTokenCount"] == 5 for c in chunks)
    assert [("finishReason" in c["candidates"][0]) for c in chunks] == [False] * 4 + [True]
    assert {(c["modelVersion"], c["responseId"]) for c in chunks} == {(MODEL, "resp-1")}


# --------------------------------------------------------------------------- errors


def test_rate_limit_error_body():
    status, body, headers = gw.render_error(
        EmuError(kind="rate_limit", message="slow down", retry_after_s=2.31), model=MODEL
    )
    assert (status, headers) == (429, {})
    error = body["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["message"].endswith("Please retry in 2.4s.")
    types = [d["@type"].rsplit(".", 1)[1] for d in error["details"]]
    assert types == ["Help", "QuotaFailure", "RetryInfo"]
    assert error["details"][2]["retryDelay"] == "3s"


def test_rate_limit_names_the_exhausted_quota_and_its_value():
    err = EmuError(
        kind="rate_limit",
        message="Quota exceeded for metric: input tokens per minute, limit: 1000",
        retry_after_s=30,
        limits={"input_tokens_limit": 1000, "requests_limit": 60},
    )
    _, body, _ = gw.render_error(err, model=f"models/{MODEL}")
    violation = body["error"]["details"][1]["violations"][0]
    assert violation["quotaMetric"].endswith("generate_content_paid_tier_input_token_count")
    assert violation["quotaValue"] == "1000"
    assert violation["quotaDimensions"] == {"location": "global", "model": MODEL}
    assert body["error"]["details"][2]["retryDelay"] == "30s"
    assert body["error"]["message"].endswith("Please retry in 30.0s.")


def test_context_length_error_body():
    err = EmuError(
        kind="context_length", message="too long", tokens_used=1300000, max_tokens=1048576
    )
    status, body, _ = gw.render_error(err)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["message"] == (
        "The input token count (1300000) exceeds the maximum number of tokens allowed (1048576)."
    )


def test_no_rate_limit_headers():
    assert gw.limit_headers({"requests_limit": 60, "requests_remaining": 0}) == {}


def test_authentication_errors():
    status, body, _ = gw.render_error(EmuError(kind="authentication", message="bad key"))
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, body, _ = gw.render_error(gw.missing_key_error())
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("kind", "status", "name"),
    [
        ("invalid_request", 400, "INVALID_ARGUMENT"),
        ("permission", 403, "PERMISSION_DENIED"),
        ("not_found", 404, "NOT_FOUND"),
        ("overloaded", 503, "UNAVAILABLE"),
        ("server_error", 500, "INTERNAL"),
    ],
)
def test_error_statuses(kind, status, name):
    code, body, headers = gw.render_error(EmuError(kind=kind, message="m"))
    assert (code, body["error"]["code"], body["error"]["status"]) == (status, status, name)
    assert headers == {}


def test_not_found_is_worded_like_the_api_when_the_model_is_known():
    _, body, _ = gw.render_error(
        EmuError(kind="not_found", message="unknown"), model="models/xyz", api_version="v1beta"
    )
    assert body["error"]["message"].startswith("models/xyz is not found for API version v1beta")
    cache_missing = EmuError(
        kind="not_found", message="CachedContent not found (or permission denied)"
    )
    _, body, _ = gw.render_error(cache_missing, model=MODEL)
    assert body["error"]["message"] == cache_missing.message
    _, body, _ = gw.render_error(EmuError(kind="overloaded", message="x"))
    assert body["error"]["message"] == "The model is overloaded. Please try again later."
