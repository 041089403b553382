"""Shared adapter helpers: token estimates by the counting rules, system splitting, images."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from llm.exceptions import InvalidRequestError, RateLimitError
from llm.models import ModelInfo, PriceTier, Pricing
from llm.providers import common
from llm.providers.base import ProviderRequest, ToolSpec
from llm.providers.common import (
    estimate_prompt_tokens,
    image_data_url,
    parse_json_arguments,
    prefix_tokens_through_system,
    redact_secret,
    seconds_until,
    split_system,
    validate_image,
)
from llm.types import ImageContent, Message, MessageRole, ToolCall, ToolResultContent

MODEL = ModelInfo(
    name="test-model",
    provider="anthropic",
    api_id="test-model-1",
    context_window=200_000,
    max_output_tokens=8192,
    pricing=Pricing(standard=PriceTier(input=Decimal("1"), output=Decimal("5"))),
)


def _request(*messages: Message, **fields) -> ProviderRequest:
    return ProviderRequest(model=MODEL, messages=messages, max_tokens=100, **fields)


def _png(width: int, height: int) -> bytes:
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return header + b"\x08\x02\x00\x00\x00" + b"\x00" * 20


def user(text: str) -> Message:
    return Message(role=MessageRole.USER, content=text)


def test_estimate_counts_overheads_system_and_messages_by_hand():
    # "Be brief." -> Be, brie, f, . = 4 tokens; "Hi!" -> Hi, ! = 2 tokens.
    req = _request(Message(role=MessageRole.SYSTEM, content="Be brief."), user("Hi!"))
    # REQUEST_OVERHEAD 3 + system (4 + 4) + user (4 + 2)
    assert estimate_prompt_tokens(req) == 17


def test_estimate_counts_tools_tool_calls_tool_results_and_schema_by_hand():
    req = _request(
        user("Hi!"),
        Message(
            role=MessageRole.ASSISTANT, tool_calls=[ToolCall(id="c1", name="f", arguments={"a": 1})]
        ),
        Message(role=MessageRole.TOOL, content="ok", tool_call_id="c1"),
        tools=(ToolSpec(name="f", description="", parameters={}),),
        structured_output_schema={"type": "object"},
    )
    tool = 3  # "f  {}" -> f, {, }
    call = 8  # 'f {"a":1}' -> f { " a " : 1 }
    schema = 10  # '{"type":"object"}' -> { " type " : " obje ct " }
    expected = 3 + tool + (4 + 2) + (4 + call) + (4 + 1) + schema
    assert estimate_prompt_tokens(req) == expected


def test_estimate_counts_tool_result_parts_and_images():
    image = base64.b64encode(_png(1000, 1000)).decode()
    req = _request(
        Message(
            role=MessageRole.USER,
            content=[
                ToolResultContent(tool_call_id="c1", content="done now"),
                ImageContent(data=image),
            ],
        )
    )
    # tool result "done now" -> done, now = 2; image 1000*1000 // 750 = 1333
    assert estimate_prompt_tokens(req) == 3 + 4 + 2 + 1333


def test_multiple_system_messages_count_as_one_prefix():
    req = _request(
        Message(role=MessageRole.SYSTEM, content="Be brief."),
        Message(role=MessageRole.SYSTEM, content="Hi!"),
        user("Hi!"),
        tools=(ToolSpec(name="f", description="", parameters={}),),
    )
    assert prefix_tokens_through_system(req) == 3 + 4 + 4 + 2
    assert estimate_prompt_tokens(req) == 3 + prefix_tokens_through_system(req) + 4 + 2


def test_split_system_joins_system_texts_and_keeps_order():
    msgs = [
        Message(role=MessageRole.SYSTEM, content="one"),
        user("a"),
        Message(role=MessageRole.SYSTEM, content="two"),
        Message(role=MessageRole.ASSISTANT, content="b"),
    ]
    system, rest = split_system(msgs)
    assert system == "one\n\ntwo"
    assert [m.text() for m in rest] == ["a", "b"]
    assert split_system([user("x")]) == (None, [user("x")])


def test_parse_json_arguments():
    assert parse_json_arguments('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_json_arguments({"b": 1}) == {"b": 1}
    assert parse_json_arguments(None) == {}
    assert parse_json_arguments('{"a": ') == {"_raw": '{"a": '}
    assert parse_json_arguments("[1]") == {"_raw": "[1]"}


def test_image_data_url_converts_url_safe_to_standard_alphabet():
    raw = b"\xfb\xff\xfe" + _png(2, 2)
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" in standard or "/" in standard
    expected = f"data:image/png;base64,{standard}"
    assert image_data_url(ImageContent(data=standard)) == expected
    assert image_data_url(ImageContent(data=url_safe)) == expected


def test_validate_image_rejects_bad_base64_and_media_types():
    with pytest.raises(InvalidRequestError, match="base64"):
        validate_image(ImageContent(data="not base64 !!!"))
    with pytest.raises(InvalidRequestError, match="media type"):
        validate_image(
            ImageContent(data=base64.b64encode(_png(2, 2)).decode(), media_type="image/bmp")
        )
    with pytest.raises(InvalidRequestError, match="media_type says image/webp"):
        validate_image(
            ImageContent(data=base64.b64encode(_png(2, 2)).decode(), media_type="image/webp")
        )
    with pytest.raises(InvalidRequestError, match="not a PNG"):
        validate_image(ImageContent(data=base64.b64encode(b"plain text").decode()))
    validate_image(ImageContent(data=base64.b64encode(_png(2, 2)).decode()))


def test_validate_image_rejects_images_over_the_size_limit(monkeypatch):
    assert common.MAX_IMAGE_BYTES == 20 * 1024 * 1024
    monkeypatch.setattr(common, "MAX_IMAGE_BYTES", 64)
    png_magic = b"\x89PNG\r\n\x1a\n"
    small = base64.b64encode(png_magic.ljust(64, b"\x00")).decode()
    big = base64.b64encode(png_magic.ljust(65, b"\x00")).decode()
    validate_image(ImageContent(data=small))
    with pytest.raises(InvalidRequestError, match="limit"):
        validate_image(ImageContent(data=big))


def test_seconds_until_and_redact_secret():
    now = datetime(2025, 2, 24, 22, 25, 0, tzinfo=UTC)
    assert seconds_until("2025-02-24T22:25:30Z", now) == 30.0
    assert seconds_until("2025-02-24T22:24:00Z", now) == 0.0
    assert seconds_until("soon", now) is None
    error = redact_secret(RateLimitError("key sk-abc leaked"), "sk-abc")
    assert "sk-abc" not in str(error) and "sk-abc" not in repr(error)
