"""A corpus of bad input rows: each becomes a typed per-row error; good rows still succeed.

The corpus (generated here; the oversize image is built in memory, never committed) goes
through the real command line, ``jobs.batch.main([...])`` with ``--runtime local`` against
an emulator. Every input line must come out as exactly one output row (a duplicate id
once), bad rows with the expected ``error_type``, good rows ``ok``; the job exits 0.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from rel_support import SENTINEL, output_rows, record_counts

from jobs.batch import main

PNG_1PX = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
#: Just over the 20 MB decoded limit of every provider.
OVERSIZE_IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(20 * 1024 * 1024 + 1)).decode()


def _user(content: object) -> list[dict]:
    return [{"role": "user", "content": content}]


def _image(data: str, media_type: str = "image/png") -> list[dict]:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image", "data": data, "media_type": media_type},
    ]
    return _user(parts)


def _row(row_id: str, **fields: object) -> str:
    row = {"id": row_id, "model": "claude-haiku-4.5", "messages": _user("Hello there"), **fields}
    return json.dumps(row)


#: (line, expected error_type or "ok", expected output id). Ids ``line-N`` are filled in.
CORPUS: list[tuple[str, str, str | None]] = [
    (_row("good-anthropic"), "ok", "good-anthropic"),
    (_row("good-openai", model="gpt-6-luna"), "ok", "good-openai"),
    (_row("good-google", model="gemini-2.5-flash-lite"), "ok", "good-google"),
    (_row("good-image", messages=_image(PNG_1PX)), "ok", "good-image"),
    ('{"id": "torn", "model": "claude-haiku-4.5", "messa', "InvalidRequestError", None),
    ("\udcff not utf-8", "InvalidRequestError", None),  # replaced by raw bytes below
    ("[1, 2, 3]", "InvalidRequestError", None),
    ('"just a string"', "InvalidRequestError", None),
    (_row("messages-number", messages=42), "InvalidRequestError", "messages-number"),
    (_row("max-tokens-text", max_tokens="ten"), "InvalidRequestError", "max-tokens-text"),
    (_row("temperature-list", temperature=[1]), "InvalidRequestError", "temperature-list"),
    (_row("model-number", model=7), "InvalidRequestError", "model-number"),
    (_row("unknown-model", model="gpt-17-ultra"), "ModelNotFoundError", "unknown-model"),
    (
        _row("bad-schema", structured_output_schema={"type": "objekt"}),
        "InvalidRequestError",
        "bad-schema",
    ),
    (
        _row("schema-not-object", structured_output_schema={"type": "object", "required": 5}),
        "InvalidRequestError",
        "schema-not-object",
    ),
    (_row("oversize-image", messages=_image(OVERSIZE_IMAGE)), "InvalidRequestError", None),
    (_row("bad-base64", messages=_image("%%%not base64%%%")), "InvalidRequestError", None),
    (_row("bad-media-type", messages=_image(PNG_1PX, "image/bmp")), "InvalidRequestError", None),
    (_row("empty-messages", messages=[]), "InvalidRequestError", "empty-messages"),
    (_row("empty-content", messages=_user("")), "InvalidRequestError", "empty-content"),
    (_row("bad-role", messages=[{"role": "wizard", "content": "hi"}]), "InvalidRequestError", None),
    (_row("message-not-object", messages=["hi"]), "InvalidRequestError", "message-not-object"),
    (
        _row("assistant-last", messages=[*_user("Hi"), {"role": "assistant", "content": "Yo"}]),
        "InvalidRequestError",
        "assistant-last",
    ),
    (json.dumps({"model": "claude-haiku-4.5", "prompt": "no id"}), "InvalidRequestError", None),
    (_row("", prompt=None), "InvalidRequestError", None),
    (_row("unknown-field", colour="blue"), "InvalidRequestError", "unknown-field"),
    (_row("both-prompt-and-messages", prompt="x"), "InvalidRequestError", None),
    (_row("negative-max-tokens", max_tokens=-5), "InvalidRequestError", None),
    (_row("huge-max-tokens", max_tokens=10**9), "InvalidRequestError", None),
    (_row("bad-effort", reasoning_effort="maximum"), "InvalidRequestError", None),
    (_row("dup"), "ok", "dup"),
    (_row("dup", max_tokens=5), "duplicate", "dup"),
]


def _corpus() -> tuple[bytes, list[tuple[str, str]]]:
    """The corpus file's bytes, and (expected error_type or 'ok', output id) per distinct id."""
    lines: list[bytes] = []
    expected: list[tuple[str, str]] = []
    for line_no, (text, outcome, row_id) in enumerate(CORPUS, start=1):
        raw = b"\xff\xfe not utf-8 {" if text.startswith("\udcff") else text.encode()
        lines.append(raw)
        if outcome == "duplicate":
            continue
        if row_id is None:
            decoded = _maybe_json(raw)
            row_id = decoded.get("id") or f"line-{line_no}"
        expected.append((outcome, row_id))
    return b"\n".join(lines) + b"\n", expected


def _maybe_json(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@pytest.fixture
def emulator_env(monkeypatch, emulator_factory):
    emulator = emulator_factory(api_key=SENTINEL)
    root = emulator.base_url
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.setenv(name, SENTINEL)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", root)
    monkeypatch.setenv("OPENAI_BASE_URL", root + "/v1")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", root)
    return emulator


def _run(tmp_path, lines: bytes) -> list[dict]:
    (tmp_path / "corpus.jsonl").write_bytes(lines)
    args = ["--output", str(tmp_path / "out"), "--runtime", "local", "--concurrency", "4"]
    assert main([str(tmp_path / "corpus.jsonl"), *args]) == 0
    return output_rows(tmp_path / "out")


def test_bad_input_corpus_gives_typed_per_row_errors(tmp_path, emulator_env) -> None:
    lines, expected = _corpus()
    rows = _run(tmp_path, lines)
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "no id twice"
    got = {
        row_id: (by_id[row_id]["error_type"] or "ok") if row_id in by_id else "missing"
        for _, row_id in expected
    }
    want = dict((row_id, outcome) for outcome, row_id in expected)
    assert got == want
    assert len(rows) == len(CORPUS) - 1, "lines in == rows out (one duplicate id once)"
    for row in rows:
        if row["status"] == "error":
            assert row["error_message"] and SENTINEL not in row["error_message"]
            assert "Hello there" not in row["error_message"], "no prompt text in errors"
    record_counts(
        "bad_inputs",
        {"lines": len(CORPUS), "rows_out": len(rows), "rows_lost": len(CORPUS) - 1 - len(rows)}
        | {"errors_by_type": dict(Counter(row["error_type"] for row in rows if row["error_type"]))},
    )


def test_non_image_bytes_labelled_png_are_a_typed_error(tmp_path, emulator_env) -> None:
    fake_png = base64.b64encode(b"plain text, not a picture").decode()
    rows = _run(tmp_path, (_row("not-an-image", messages=_image(fake_png)) + "\n").encode())
    assert [row["error_type"] for row in rows] == ["InvalidRequestError"]
