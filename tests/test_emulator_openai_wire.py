"""Pure tests of the emulator's OpenAI wire module (no network, no SDK)."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from llm import tokens
from llm.emulator import openai_wire as wire
from llm.emulator.protocol import EmuError, EmuResult, EmuToolCall

SENTINEL = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
}


def png_b64(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return base64.b64encode(header + b"\x08\x02\x00\x00\x00").decode()


def chat_body(**extra):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]}
    body.update(extra)
    return body


def result(**overrides) -> EmuResult:
    fields = {
        "request_id": "req_abc123",
        "model_version": "gpt-4o-2024-08-06",
        "text": "Paris is the capital.",
        "tool_calls": (),
        "thinking_text": None,
        "input_tokens": 2000,
        "output_tokens": 300,
        "reasoning_tokens": 200,
        "cached_tokens": 1152,
        "text_chunks": ("Paris", " is the", " capital."),
    }
    fields.update(overrides)
    return EmuResult(**fields)


def tool_result(**overrides) -> EmuResult:
    call = EmuToolCall(id="toolu_01XyZ", name="get_weather", arguments={"location": "Paris, FR"})
    return result(text="", text_chunks=(), tool_calls=(call,), finish="tool_calls", **overrides)


def sse_payloads(frames: list[bytes]) -> list[dict]:
    return [json.loads(f.removeprefix(b"data: ")) for f in frames if f != b"data: [DONE]\n\n"]


def events(frames: list[bytes]) -> list[tuple[str, dict]]:
    parsed = []
    for frame in frames:
        event_line, data_line = frame.decode().rstrip("\n").split("\n")
        parsed.append((event_line.removeprefix("event: "), json.loads(data_line[6:])))
    return parsed


# --- segments and token counts ------------------------------------------------------------


def test_chat_segments_follow_the_counting_rules():
    image = png_b64(300, 500)
    body = {
        "model": "gpt-4o",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "w",
                    "parameters": WEATHER_PARAMS,
                },
            }
        ],
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": WEATHER_PARAMS, "strict": True},
        },
    }
    req = wire.parse_chat(body, {})
    expected = [
        tokens.REQUEST_OVERHEAD,
        tokens.count_tool_tokens("get_weather", "w", WEATHER_PARAMS),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Be terse."),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("weather?") + 200,
        tokens.MESSAGE_OVERHEAD
        + tokens.count_tool_call_tokens("get_weather", {"location": "Paris"}),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("18C"),
        tokens.count_schema_tokens(WEATHER_PARAMS),
    ]
    assert [s.tokens for s in req.segments] == expected
    assert req.json_schema == WEATHER_PARAMS
    assert req.after_tool_result is True
    assert req.last_user_text == "weather?"
    assert all(s.cache_ttl is None for s in req.segments)


def test_equal_prefixes_have_equal_keys_and_changes_change_them():
    first = wire.parse_chat(
        chat_body(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "a"}]),
        {},
    )
    second = wire.parse_chat(
        chat_body(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "b"}]),
        {},
    )
    changed = wire.parse_chat(
        chat_body(messages=[{"role": "system", "content": "T"}, {"role": "user", "content": "a"}]),
        {},
    )
    assert [s.key for s in first.segments[:2]] == [s.key for s in second.segments[:2]]
    assert first.segments[2].key != second.segments[2].key
    assert first.segments[1].key != changed.segments[1].key


def test_string_and_part_list_content_are_the_same_segment():
    plain = wire.parse_chat(chat_body(messages=[{"role": "user", "content": "hi"}]), {})
    parts = wire.parse_chat(
        chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]), {}
    )
    assert plain.segments == parts.segments


def test_responses_counts_match_chat_for_the_same_conversation():
    chat = wire.parse_chat(
        chat_body(
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"P"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"L"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "12C"},
            ]
        ),
        {},
    )
    responses = wire.parse_responses(
        {
            "model": "gpt-4o",
            "instructions": "Be terse.",
            "input": [
                {"role": "user", "content": "weather in Paris?"},
                {"type": "message", "role": "assistant", "content": "Checking."},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"location":"P"}',
                },
                {
                    "type": "function_call",
                    "call_id": "call_2",
                    "name": "get_weather",
                    "arguments": '{"location":"L"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                {"type": "function_call_output", "call_id": "call_2", "output": "12C"},
            ],
        },
        {},
    )
    assert [s.tokens for s in responses.segments] == [s.tokens for s in chat.segments]
    assert responses.after_tool_result and chat.after_tool_result
    assert responses.api == "responses" and chat.api == "chat"


def test_responses_string_input_and_instructions():
    req = wire.parse_responses(
        {"model": "gpt-5.5", "input": "Hi [[emu:tokens=5]]", "instructions": "Be terse."}, {}
    )
    assert req.last_user_text == "Hi [[emu:tokens=5]]"
    assert [s.tokens for s in req.segments] == [
        tokens.REQUEST_OVERHEAD,
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Be terse."),
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("Hi [[emu:tokens=5]]"),
    ]
    assert req.after_tool_result is False


def test_responses_image_and_schema():
    image = png_b64(1500, 1500)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = wire.parse_responses(
        {
            "model": "gpt-5.5",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is it?"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{image}"},
                    ],
                }
            ],
            "text": {"format": {"type": "json_schema", "name": "ans", "schema": schema}},
            "max_output_tokens": 500,
            "reasoning": {"effort": "low", "summary": "auto"},
        },
        {},
    )
    assert req.segments[1].tokens == (
        tokens.MESSAGE_OVERHEAD + tokens.count_text_tokens("What is it?") + tokens.MAX_IMAGE_TOKENS
    )
    assert req.segments[-1].tokens == tokens.count_schema_tokens(schema)
    assert req.json_schema == schema
    assert (req.max_tokens, req.reasoning_effort, req.include_thoughts) == (500, "low", True)


# --- request field mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("none", "none"),
        ("required", "any"),
        ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
    ],
)
def test_chat_tool_choice_mapping(choice, expected):
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}
    ]
    body = chat_body(tools=tools)
    if choice is not None:
        body["tool_choice"] = choice
    assert wire.parse_chat(body, {}).tool_choice == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("required", "any"), ({"type": "function", "name": "get_weather"}, "get_weather")],
)
def test_responses_tool_choice_mapping(choice, expected):
    body = {
        "model": "gpt-5.5",
        "input": "x",
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMS}],
        "tool_choice": choice,
    }
    req = wire.parse_responses(body, {})
    assert req.tool_choice == expected
    assert req.tools[0].parameters == WEATHER_PARAMS


def test_chat_option_mapping():
    req = wire.parse_chat(
        chat_body(
            max_completion_tokens=256,
            max_tokens=99,
            stream=True,
            stream_options={"include_usage": True},
            stop=["END"],
            reasoning_effort="high",
            response_format={"type": "json_object"},
        ),
        {},
    )
    assert req.max_tokens == 256
    assert req.stream and req.echo["include_usage"] is True
    assert req.stop_sequences == ("END",)
    assert req.reasoning_effort == "high"
    assert req.json_schema == {"type": "object"}
    assert wire.parse_chat(chat_body(max_tokens=99), {}).max_tokens == 99
    assert wire.parse_chat(chat_body(stream=True), {}).echo["include_usage"] is False


BAD_PNG_URL = "data:image/png;base64,@@@not-base64@@@"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "you must provide a model parameter"),
        ({"model": "gpt-4o"}, "Missing required parameter: 'messages'."),
        ({"model": "gpt-4o", "messages": []}, "Invalid 'messages': empty array."),
        ({"model": "gpt-4o", "messages": "hi"}, "Invalid type for 'messages'"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "Invalid type for 'model'"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "'robot'"),
        ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "'messages[0].role'"),
        (
            {
                "model": "gpt-4o",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": BAD_PNG_URL}}],
                    }
                ],
            },
            "unsupported image",
        ),
        (
            {
                "model": "gpt-4o",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:text/plain;base64,aGk="},
                            }
                        ],
                    }
                ],
            },
            "image MIME type",
        ),
        (chat_body(tool_choice="required"), "only allowed when 'tools' are specified"),
        (chat_body(stream_options={"include_usage": True}), "only allowed when 'stream'"),
        (chat_body(reasoning_effort="extreme"), "'extreme'"),
        (chat_body(max_completion_tokens=0), "integer below minimum value"),
    ],
)
def test_malformed_chat_bodies_raise_invalid_request(body, fragment):
    with pytest.raises(EmuError) as caught:
        wire.parse_chat(body, {})
    assert caught.value.kind == "invalid_request"
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "gpt-5.5"}, "Missing required parameter: 'input'."),
        ({"model": "gpt-5.5", "input": []}, "Invalid 'input': empty array."),
        (
            {"model": "gpt-5.5", "input": [{"type": "item_reference", "id": "x"}]},
            "'item_reference'",
        ),
        ({"model": "gpt-5.5", "input": "x", "max_output_tokens": 5}, "Expected a value >= 16"),
        ({"model": "gpt-5.5", "input": "x", "tools": [{"type": "web_search"}]}, "'web_search'"),
        ({"model": "gpt-5.5", "input": "x", "previous_response_id": "resp_1"}, "not found"),
        (
            {"model": "gpt-5.5", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
        ),
    ],
)
def test_malformed_responses_bodies_raise_invalid_request(body, fragment):
    with pytest.raises(EmuError) as caught:
        wire.parse_responses(body, {})
    assert caught.value.kind == "invalid_request"
    assert fragment in caught.value.message


# --- rendering -------------------------------------------------------------------------------


def test_render_chat_usage_convention():
    rendered = wire.render_chat(wire.parse_chat(chat_body(), {}), result())
    assert rendered["object"] == "chat.completion"
    assert rendered["id"].startswith("chatcmpl-")
    assert rendered["usage"]["prompt_tokens"] == 2000
    assert rendered["usage"]["completion_tokens"] == 300
    assert rendered["usage"]["total_tokens"] == 2300
    assert rendered["usage"]["prompt_tokens_details"]["cached_tokens"] == 1152
    assert rendered["usage"]["completion_tokens_details"]["reasoning_tokens"] == 200
    choice = rendered["choices"][0]
    assert choice["message"]["content"] == "Paris is the capital."
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]


def test_render_chat_tool_calls_carry_string_arguments():
    rendered = wire.render_chat(wire.parse_chat(chat_body(), {}), tool_result())
    message = rendered["choices"][0]["message"]
    assert message["content"] is None
    call = message["tool_calls"][0]
    assert call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris, FR"}
    assert rendered["choices"][0]["finish_reason"] == "tool_calls"


def test_render_chat_length_finish():
    rendered = wire.render_chat(wire.parse_chat(chat_body(), {}), result(finish="length"))
    assert rendered["choices"][0]["finish_reason"] == "length"


def test_stream_chat_frames_with_usage():
    req = wire.parse_chat(chat_body(stream=True, stream_options={"include_usage": True}), {})
    frames = wire.stream_chat(req, result())
    assert all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = sse_payloads(frames)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris is the capital."
    finish = chunks[-2]
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"] == 1152
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_chat_without_include_usage_has_no_usage_chunk():
    frames = wire.stream_chat(wire.parse_chat(chat_body(stream=True), {}), result())
    chunks = sse_payloads(frames)
    assert all(c["choices"] for c in chunks)
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_chat_tool_call_deltas():
    call = EmuToolCall(
        id="call_x", name="get_weather", arguments={"location": "a rather long place name"}
    )
    res = result(text="", text_chunks=(), tool_calls=(call,), finish="tool_calls")
    chunks = sse_payloads(wire.stream_chat(wire.parse_chat(chat_body(stream=True), {}), res))
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert deltas[0]["id"] == "call_x" and deltas[0]["function"]["name"] == "get_weather"
    assert all(d["index"] == 0 for d in deltas)
    assert all("id" not in d and "name" not in d["function"] for d in deltas[1:])
    assert len(deltas) > 2
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(arguments) == call.arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_render_responses_object():
    req = wire.parse_responses(
        {"model": "gpt-5.5", "input": "x", "reasoning": {"effort": "low"}}, {}
    )
    rendered = wire.render_responses(req, result())
    assert rendered["id"].startswith("resp_") and rendered["object"] == "response"
    assert rendered["status"] == "completed" and rendered["incomplete_details"] is None
    assert [item["type"] for item in rendered["output"]] == ["reasoning", "message"]
    assert rendered["output"][0]["id"].startswith("rs_")
    assert rendered["output"][1]["content"][0]["text"] == "Paris is the capital."
    assert rendered["usage"] == {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1152, "cache_write_tokens": 0},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 200},
        "total_tokens": 2300,
    }
    assert rendered["reasoning"]["effort"] == "low"


def test_render_responses_incomplete_and_function_call():
    req = wire.parse_responses({"model": "gpt-5.5", "input": "x"}, {})
    incomplete = wire.render_responses(req, result(finish="length", reasoning_tokens=0))
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}
    called = wire.render_responses(req, tool_result(reasoning_tokens=0))
    (item,) = called["output"]
    assert item["type"] == "function_call" and item["call_id"].startswith("call_")
    assert json.loads(item["arguments"]) == {"location": "Paris, FR"}


def test_stream_responses_event_sequence():
    req = wire.parse_responses({"model": "gpt-5.5", "input": "x", "stream": True}, {})
    parsed = events(wire.stream_responses(req, result(reasoning_tokens=0)))
    names = [name for name, _ in parsed]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in parsed)
    assert [data["sequence_number"] for _, data in parsed] == list(range(len(parsed)))
    deltas = "".join(d["delta"] for n, d in parsed if n == "response.output_text.delta")
    assert deltas == "Paris is the capital."
    assert parsed[0][1]["response"]["status"] == "in_progress"
    assert parsed[-1][1]["response"]["usage"]["total_tokens"] == 2300


def test_stream_responses_function_call_and_incomplete():
    req = wire.parse_responses({"model": "gpt-5.5", "input": "x", "stream": True}, {})
    parsed = events(wire.stream_responses(req, tool_result(reasoning_tokens=0)))
    names = [name for name, _ in parsed]
    assert "response.function_call_arguments.done" in names
    args = "".join(d["delta"] for n, d in parsed if n == "response.function_call_arguments.delta")
    assert json.loads(args) == {"location": "Paris, FR"}
    cut = events(wire.stream_responses(req, result(finish="length", reasoning_tokens=0)))
    assert cut[-1][0] == "response.incomplete"


# --- errors and headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("authentication", 401, "invalid_api_key"),
        ("permission", 403, "permission_denied"),
        ("not_found", 404, "model_not_found"),
        ("invalid_request", 400, None),
        ("rate_limit", 429, "rate_limit_exceeded"),
        ("overloaded", 503, "service_unavailable"),
        ("server_error", 500, "server_error"),
    ],
)
def test_error_status_and_code(kind, status, code):
    got_status, body, _ = wire.render_error(EmuError(kind=kind, message="boom"))
    assert got_status == status
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_invalid_request_keeps_param_and_code():
    with pytest.raises(EmuError) as caught:
        wire.parse_chat({"model": "gpt-4o"}, {})
    status, body, _ = wire.render_error(caught.value)
    assert status == 400
    assert body["error"]["param"] == "messages"
    assert body["error"]["code"] == "missing_required_parameter"


def test_context_length_wording_per_api():
    err = EmuError(kind="context_length", message="too long", tokens_used=130532, max_tokens=128000)
    _, chat, _ = wire.render_error(err)
    assert chat["error"]["message"] == (
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130532 tokens. Please reduce the length of the messages."
    )
    assert (chat["error"]["code"], chat["error"]["param"]) == (
        "context_length_exceeded",
        "messages",
    )
    _, responses, _ = wire.render_error(err, api="responses")
    assert responses["error"]["message"].startswith("Your input exceeds the context window")


def test_auth_error_never_echoes_a_key():
    status, body, _ = wire.render_error(EmuError(kind="authentication", message=SENTINEL))
    assert status == 401
    assert SENTINEL not in json.dumps(body)
    assert "sk-...****" in body["error"]["message"]


def test_rate_limit_names_the_limit_and_sets_headers():
    limits = {
        "requests_limit": 3,
        "requests_remaining": 0,
        "requests_reset_s": 20.0,
        "input_tokens_limit": 30000,
        "input_tokens_remaining": 29000,
        "input_tokens_reset_s": 0.5,
    }
    err = EmuError(kind="rate_limit", message="", retry_after_s=19.2, limits=limits)
    status, body, headers = wire.render_error(err, model="gpt-4o")
    assert status == 429
    assert body["error"]["type"] == "requests"
    assert "requests per min (RPM): Limit 3" in body["error"]["message"]
    assert "gpt-4o" in body["error"]["message"]
    assert headers["retry-after"] == "20"
    assert headers["retry-after-ms"] == "19200"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "20s"
    assert headers["x-ratelimit-limit-tokens"] == "30000"


def test_token_rate_limit_is_named_tokens():
    limits = {"input_tokens_limit": 1000, "input_tokens_remaining": 0, "requests_remaining": 5}
    err = EmuError(kind="rate_limit", message="", retry_after_s=1.0, limits=limits)
    _, body, _ = wire.render_error(err)
    assert body["error"]["type"] == "tokens"
    assert "tokens per min (TPM): Limit 1000" in body["error"]["message"]


def test_rate_limit_keeps_the_engine_message():
    message = "Rate limit reached for gpt-4o on input tokens per min (ITPM): Limit 10."
    _, body, headers = wire.render_error(EmuError(kind="rate_limit", message=message))
    assert body["error"]["message"] == message
    assert body["error"]["type"] == "tokens"
    assert "retry-after" not in headers


def test_missing_key_keeps_its_own_wording():
    message = "You didn't provide an API key. You need to provide your API key in a header."
    status, body, _ = wire.render_error(EmuError(kind="authentication", message=message))
    assert status == 401
    assert body["error"]["message"] == message and body["error"]["code"] is None


def test_engine_responses_context_message_is_recognised_without_api():
    message = "Your input exceeds the context window of this model. Please adjust your input and try again."
    err = EmuError(kind="context_length", message=message, tokens_used=9, max_tokens=5)
    _, body, _ = wire.render_error(err)
    assert body["error"]["message"] == message
    assert body["error"]["param"] == "input"


def test_limit_headers_combine_input_and_output_tokens():
    headers = wire.limit_headers(
        {
            "requests_limit": 5000,
            "requests_remaining": 4999,
            "requests_reset_s": 0.012,
            "input_tokens_limit": 100000,
            "input_tokens_remaining": 99000,
            "input_tokens_reset_s": 0.009,
            "output_tokens_limit": 60000,
            "output_tokens_remaining": 59976,
            "output_tokens_reset_s": 360.0,
        }
    )
    assert headers == {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-limit-tokens": "160000",
        "x-ratelimit-remaining-tokens": "158976",
        "x-ratelimit-reset-tokens": "6m0s",
    }


def test_limit_headers_omit_missing_values():
    headers = wire.limit_headers({"requests_limit": 10, "requests_remaining": None})
    assert headers == {"x-ratelimit-limit-requests": "10"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.012, "12ms"), (1, "1s"), (360, "6m0s"), (179.56, "2m59.56s"), (3600, "1h0m0s"), (0, "0s")],
)
def test_go_duration(seconds, text):
    assert wire.go_duration(seconds) == text


def test_api_key_from_bearer_header():
    assert wire.api_key_from({"Authorization": f"Bearer {SENTINEL}"}, {}) == SENTINEL
    assert wire.api_key_from({"authorization": "Bearer  k1 "}, {}) == "k1"
    assert wire.api_key_from({"authorization": "Basic abc"}, {}) is None
    assert wire.api_key_from({}, {"key": "k"}) is None
