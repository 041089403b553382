"""Shared pieces of the emulated batch routes: the base class every provider's batch routes
extend (key check, error rendering, job lookup), the row answerer (:func:`answer_with`: parse,
answer through the batch engine, render) and small JSON/JSONL helpers.

The routes themselves live per provider: :mod:`llm.emulator.batch_anthropic`,
:mod:`llm.emulator.batch_openai` and :mod:`llm.emulator.batch_gemini`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from aiohttp import web

from llm.emulator.batch_store import BatchJob, BatchService, RowResult, batch_service
from llm.emulator.engine import ConnectionFault, Engine
from llm.emulator.protocol import EmuError

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def answer_with(
    service: BatchService,
    wire: ModuleType,
    api_key: str | None,
    parse: Callable[[Any], Any],
    render: Callable[[Any, Any], dict[str, Any]],
    mark: Callable[[dict[str, Any]], None],
    error: Callable[[EmuError], tuple[int, dict[str, Any], dict[str, str]]],
) -> Callable[[Any], RowResult]:
    """A row answerer: parse, answer through the batch engine, render (or render the error)."""

    def answer(raw: Any) -> RowResult:
        try:
            req = parse(raw)
            outcome = service.engine.prepare(req, api_key)
        except EmuError as err:
            status, body, _ = error(err)
            return RowResult("errored", body, status, err.request_id)
        except ConnectionFault:  # a fault directive inside a batch: an internal error row
            status, body, _ = error(EmuError("server_error", "Internal server error"))
            return RowResult("errored", body, status)
        body = render(req, outcome.result)
        mark(body)
        return RowResult("succeeded", body, 200, outcome.result.request_id)

    return answer


class BatchRoutesBase:
    """The emulator's engine and loaded wire modules, and the helpers every route uses."""

    def __init__(self, engine: Engine, wires: Mapping[str, ModuleType | None]) -> None:
        self.engine = engine
        self.wires = wires

    @property
    def service(self) -> BatchService:
        return batch_service(self.engine)

    def _wire(self, provider: str) -> ModuleType:
        wire = self.wires[provider]
        assert wire is not None
        return wire

    def _error(self, provider: str, err: EmuError) -> web.Response:
        wire = self._wire(provider)
        status, body, headers = wire.render_error(self.engine.finish_error(err, None))
        return web.json_response(body, status=status, headers=headers)

    def _key(self, provider: str, request: web.Request) -> str | None:
        key = self._wire(provider).api_key_from(request.headers, request.query)
        self.engine._authenticate(provider, key)
        return key

    def _job(self, provider: str, job_id: str) -> BatchJob:
        job = self.service.get(job_id)
        if job is None or job.provider != provider:
            raise EmuError("not_found", f"No batch found with id '{job_id}'.")
        return job

    async def _guard(
        self, provider: str, request: web.Request, action: Callable[[str | None], Any]
    ) -> web.StreamResponse:
        try:
            key = self._key(provider, request)
            result = action(key)
            return result if isinstance(result, web.StreamResponse) else web.json_response(result)
        except EmuError as err:
            return self._error(provider, err)


def from_gemini(request: web.Request) -> bool:
    return "x-goog-api-key" in request.headers or "key" in request.query


def read_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise EmuError("invalid_request", "The request body is not valid JSON.") from None


def id_rows(requests: list[Any], id_field: str, body_field: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise EmuError("invalid_request", f"requests.{index}: must be an object")
        custom_id = item.get(id_field)
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise EmuError(
                "invalid_request",
                f"requests.{index}.{id_field}: must be 1-64 characters of a-z, A-Z, 0-9, _ or -",
            )
        if custom_id in seen:
            raise EmuError(
                "invalid_request", f"requests.{index}: duplicate {id_field} {custom_id!r}"
            )
        seen.add(custom_id)
        rows.append((custom_id, item.get(body_field)))
    return rows


def lines_bytes(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def jsonl(lines: list[str]) -> web.Response:
    return web.Response(body=lines_bytes(lines), content_type="application/binary")


def public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if not k.startswith("_")}
