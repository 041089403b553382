"""HTTP routes of the three emulated batch APIs, as the unmodified SDKs call them.

* Anthropic Message Batches: ``POST /v1/messages/batches``, ``GET .../{id}``,
  ``GET .../{id}/results`` (JSONL), ``POST .../{id}/cancel``. Rows answer with
  ``usage.service_tier = "batch"``. Limits: 100,000 requests or 256 MB per batch.
* OpenAI Batch: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``,
  ``POST /v1/batches/{id}/cancel``. Output and error files are JSONL files; a file over
  200 MB is refused and one over 50,000 lines fails the batch at validation. Rows answer
  with ``service_tier = "batch"``.
* Gemini batch mode (inline requests): ``POST /{v}/models/{model}:batchGenerateContent``,
  ``GET /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel``; inline input over 20 MB is
  refused. Results come back inline in the batch's ``metadata.output``.

State, timing and expiry live in :mod:`llm.emulator.batch_store`; each row is parsed,
answered and rendered by the same wire modules and engine as an online call.
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

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _answer_with(
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


class BatchRoutes:
    """The batch endpoints of one emulator app."""

    def __init__(self, engine: Engine, wires: Mapping[str, ModuleType | None]) -> None:
        self.engine = engine
        self.wires = wires

    @property
    def service(self) -> BatchService:
        return batch_service(self.engine)

    def add_to(self, app: web.Application) -> None:
        add = app.router.add_route
        if self.wires.get("anthropic") is not None:
            add("POST", "/v1/messages/batches", self.anthropic_create)
            add("GET", "/v1/messages/batches/{bid}", self.anthropic_get)
            add("GET", "/v1/messages/batches/{bid}/results", self.anthropic_results)
            add("POST", "/v1/messages/batches/{bid}/cancel", self.anthropic_cancel)
        if self.wires.get("openai") is not None:
            add("POST", "/v1/files", self.openai_upload)
            add("GET", "/v1/files/{fid}", self.openai_file)
            add("GET", "/v1/files/{fid}/content", self.openai_file_content)
            add("POST", "/v1/batches", self.openai_create)
            add("GET", "/v1/batches/{bid}", self.openai_get)
            add("POST", "/v1/batches/{bid}/cancel", self.openai_cancel)
        if self.wires.get("google") is not None:
            add(
                "POST",
                r"/{version}/models/{model:[^:/]+}:batchGenerateContent",
                self.gemini_create,
            )
            add("GET", r"/{version}/batches/{bid:[^:/]+}", self.gemini_get)
            add("POST", r"/{version}/batches/{bid:[^:/]+}:cancel", self.gemini_cancel)

    # ------------------------------------------------------------------ helpers
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

    # --------------------------------------------------------------- Anthropic
    def _anthropic_batch(self, job: BatchJob, request: web.Request) -> dict[str, Any]:
        ended = job.state == "ended"
        origin = f"{request.scheme}://{request.host}"
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": {"pending": "in_progress"}.get(job.state, job.state),
            "request_counts": {k: v for k, v in job.counts().items()},
            "ended_at": _iso(job.ended_at),
            "created_at": _iso(job.created_at),
            "expires_at": _iso(job.created_at + self.service.settings.expiry_s),
            "archived_at": None,
            "cancel_initiated_at": _iso(job.cancel_at),
            "results_url": f"{origin}/v1/messages/batches/{job.id}/results" if ended else None,
        }

    async def anthropic_create(self, request: web.Request) -> web.StreamResponse:
        wire = self._wire("anthropic")
        raw = await request.read()

        def create(key: str | None) -> dict[str, Any]:
            limits = self.service.settings
            if len(raw) > limits.anthropic_max_bytes:
                raise EmuError(
                    "invalid_request",
                    f"Batch size exceeds the limit of {limits.anthropic_max_bytes} bytes.",
                )
            body = _json(raw)
            requests = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(requests, list) or not requests:
                raise EmuError("invalid_request", "requests: List should have at least 1 item")
            if len(requests) > limits.anthropic_max_requests:
                raise EmuError(
                    "invalid_request",
                    f"requests: the batch has {len(requests)} requests; the maximum is "
                    f"{limits.anthropic_max_requests}.",
                )
            rows = _rows(requests, "custom_id", "params")
            headers = dict(request.headers)

            def mark(message: dict[str, Any]) -> None:
                message.setdefault("usage", {})["service_tier"] = "batch"

            def parse(params: Any) -> Any:
                if isinstance(params, dict) and params.get("stream"):
                    raise EmuError("invalid_request", "stream: streaming is not supported")
                return wire.parse_messages(params, headers)

            answer = _answer_with(
                self.service, wire, key, parse, wire.render_message, mark, wire.render_error
            )
            job = self.service.create("anthropic", key, rows, answer, prefix="msgbatch_")
            return self._anthropic_batch(job, request)

        return await self._guard("anthropic", request, create)

    async def anthropic_get(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]
        return await self._guard(
            "anthropic",
            request,
            lambda key: self._anthropic_batch(self._job("anthropic", bid), request),
        )

    async def anthropic_cancel(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]

        def cancel(key: str | None) -> dict[str, Any]:
            job = self.service.cancel(self._job("anthropic", bid))
            return self._anthropic_batch(job, request)

        return await self._guard("anthropic", request, cancel)

    async def anthropic_results(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]

        def results(key: str | None) -> web.Response:
            job = self._job("anthropic", bid)
            if job.state != "ended":
                raise EmuError(
                    "invalid_request", f"Batch {bid} is still in progress; results not ready."
                )
            lines = []
            for custom_id, _ in job.rows:
                row = job.results[custom_id]
                if row.kind == "succeeded":
                    result: dict[str, Any] = {"type": "succeeded", "message": row.body}
                elif row.kind == "errored":
                    result = {"type": "errored", "error": row.body}
                else:
                    result = {"type": row.kind}
                lines.append(json.dumps({"custom_id": custom_id, "result": result}))
            return _jsonl(lines)

        return await self._guard("anthropic", request, results)

    # ------------------------------------------------------------------ OpenAI
    def _openai_batch(self, job: BatchJob) -> dict[str, Any]:
        meta = job.meta
        state = {
            ("pending", None): "in_progress" if meta.get("seen") else "validating",
            ("canceling", None): "cancelling",
            ("ended", "completed"): "completed",
            ("ended", "canceled"): "cancelled",
            ("ended", "expired"): "expired",
            ("ended", "failed"): "failed",
        }[(job.state, job.reason)]
        meta["seen"] = True
        if job.state == "ended" and "output_file_id" not in meta:
            self._openai_write_files(job)
        counts = job.counts()
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": meta["endpoint"],
            "errors": meta.get("errors"),
            "input_file_id": meta["input_file_id"],
            "completion_window": "24h",
            "status": state,
            "output_file_id": meta.get("output_file_id"),
            "error_file_id": meta.get("error_file_id"),
            "created_at": int(job.created_at),
            "in_progress_at": int(job.created_at),
            "expires_at": int(job.created_at + self.service.settings.expiry_s),
            "finalizing_at": int(job.ended_at) if job.reason == "completed" else None,
            "completed_at": int(job.ended_at) if job.reason == "completed" else None,
            "failed_at": int(job.ended_at) if job.reason == "failed" else None,
            "expired_at": int(job.ended_at) if job.reason == "expired" else None,
            "cancelling_at": int(job.cancel_at) if job.cancel_at else None,
            "cancelled_at": int(job.ended_at) if job.reason == "canceled" else None,
            "request_counts": {
                "total": len(job.rows),
                "completed": counts["succeeded"],
                "failed": counts["errored"] + counts["expired"],
            },
            "metadata": meta.get("metadata"),
        }

    def _openai_write_files(self, job: BatchJob) -> None:
        ok, bad = [], []
        for custom_id, _ in job.rows:
            row = job.results.get(custom_id)
            if row is None or row.kind == "canceled":
                continue
            line: dict[str, Any] = {"id": "batch_req_" + job.id[-12:] + custom_id[:16]}
            line["custom_id"] = custom_id
            if row.kind == "expired":
                line["response"] = None
                line["error"] = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion "
                    "window expired.",
                }
            else:
                line["response"] = {
                    "status_code": row.status,
                    "request_id": row.request_id or "",
                    "body": row.body,
                }
                line["error"] = None
            (ok if row.kind == "succeeded" else bad).append(json.dumps(line))
        files = self.service
        if ok:
            info = files.add_file("batch_output", "batch_output.jsonl", _lines_bytes(ok))
            job.meta["output_file_id"] = info["id"]
        else:
            job.meta["output_file_id"] = None
        if bad:
            info = files.add_file("batch_output", "batch_errors.jsonl", _lines_bytes(bad))
            job.meta["error_file_id"] = info["id"]

    async def openai_upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        def upload(key: str | None) -> dict[str, Any]:
            purpose = str(form.get("purpose") or "")
            upload = form.get("file")
            if purpose not in ("batch", "assistants", "fine-tune", "user_data", "vision"):
                raise EmuError("invalid_request", f"Invalid purpose: {purpose!r}")
            if upload is None or not hasattr(upload, "file"):
                raise EmuError("invalid_request", "file: a file is required")
            content = upload.file.read()
            limit = self.service.settings.openai_max_file_bytes
            if purpose == "batch" and len(content) > limit:
                raise EmuError(
                    "invalid_request",
                    f"File is too large: {len(content)} bytes; batch input files may be at "
                    f"most {limit} bytes.",
                )
            info = self.service.add_file(purpose, upload.filename or "upload.jsonl", content)
            return _public(info)

        return await self._guard("openai", request, upload)

    def _openai_file_info(self, fid: str) -> dict[str, Any]:
        info = self.service.files.get(fid)
        if info is None:
            raise EmuError("not_found", f"No such File object: {fid}")
        return info

    async def openai_file(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["fid"]
        return await self._guard(
            "openai", request, lambda key: _public(self._openai_file_info(fid))
        )

    async def openai_file_content(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["fid"]
        return await self._guard(
            "openai",
            request,
            lambda key: web.Response(
                body=self._openai_file_info(fid)["_content"],
                content_type="application/octet-stream",
            ),
        )

    async def openai_create(self, request: web.Request) -> web.StreamResponse:
        wire = self._wire("openai")
        raw = await request.read()

        def create(key: str | None) -> dict[str, Any]:
            body = _json(raw)
            endpoint = body.get("endpoint")
            if endpoint not in _OPENAI_ENDPOINTS:
                raise EmuError("invalid_request", f"Invalid endpoint: {endpoint!r}")
            if body.get("completion_window") != "24h":
                raise EmuError("invalid_request", "completion_window: only '24h' is supported")
            file_id = str(body.get("input_file_id") or "")
            info = self._openai_file_info(file_id)
            rows, errors = _openai_lines(info["_content"], endpoint, self.service)
            headers = dict(request.headers)
            if endpoint == "/v1/responses":
                parse, render = wire.parse_responses, wire.render_responses
            else:
                parse, render = wire.parse_chat, wire.render_chat

            def mark(answer: dict[str, Any]) -> None:
                answer["service_tier"] = "batch"

            def error(err: EmuError) -> tuple[int, dict[str, Any], dict[str, str]]:
                return wire.render_error(err)

            answer = _answer_with(
                self.service, wire, key, lambda b: parse(b, headers), render, mark, error
            )
            meta = {
                "endpoint": endpoint,
                "input_file_id": file_id,
                "metadata": body.get("metadata"),
            }
            job = self.service.create("openai", key, rows, answer, prefix="batch_", meta=meta)
            if errors:
                job.meta["errors"] = {"object": "list", "data": errors}
                self.service._end(job, "failed", {})
                job.meta["output_file_id"] = None
            return self._openai_batch(job)

        return await self._guard("openai", request, create)

    async def openai_get(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]
        if _from_gemini(request):  # Gemini's /v1/batches/{id} shares OpenAI's path
            return await self.gemini_get(request)
        return await self._guard(
            "openai", request, lambda key: self._openai_batch(self._job("openai", bid))
        )

    async def openai_cancel(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]
        if _from_gemini(request):
            return await self.gemini_cancel(request)

        def cancel(key: str | None) -> dict[str, Any]:
            job = self.service.cancel(self._job("openai", bid))
            return self._openai_batch(job)

        return await self._guard("openai", request, cancel)

    # ------------------------------------------------------------------ Gemini
    def _gemini_batch(self, job: BatchJob) -> dict[str, Any]:
        state = {
            ("pending", None): "BATCH_STATE_RUNNING",
            ("canceling", None): "BATCH_STATE_RUNNING",
            ("ended", "completed"): "BATCH_STATE_SUCCEEDED",
            ("ended", "canceled"): "BATCH_STATE_CANCELLED",
            ("ended", "expired"): "BATCH_STATE_EXPIRED",
        }[(job.state, job.reason)]
        counts = job.counts()
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job.meta["model"],
            "displayName": job.meta.get("displayName", ""),
            "createTime": _iso(job.created_at),
            "updateTime": _iso(job.ended_at or job.created_at),
            "state": state,
            "name": job.id,
            "batchStats": {
                "requestCount": str(len(job.rows)),
                "successfulRequestCount": str(counts["succeeded"]),
                "failedRequestCount": str(counts["errored"]),
                "pendingRequestCount": str(counts["processing"]),
            },
        }
        if job.ended_at is not None:
            metadata["endTime"] = _iso(job.ended_at)
        if job.reason == "completed":
            inlined = []
            for custom_id, _ in job.rows:
                row = job.results[custom_id]
                item: dict[str, Any] = {"metadata": {"key": custom_id}}
                if row.kind == "succeeded":
                    item["response"] = row.body
                else:
                    item["error"] = (row.body or {}).get("error", row.body)
                inlined.append(item)
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": inlined}}
        return {"name": job.id, "metadata": metadata, "done": job.state == "ended"}

    async def gemini_create(self, request: web.Request) -> web.StreamResponse:
        wire = self._wire("google")
        raw = await request.read()
        model = request.match_info["model"]

        def create(key: str | None) -> dict[str, Any]:
            limit = self.service.settings.gemini_max_inline_bytes
            if len(raw) > limit:
                raise EmuError(
                    "invalid_request",
                    f"Request payload size exceeds the limit: {limit} bytes.",
                )
            body = _json(raw)
            batch = body.get("batch") if isinstance(body, dict) else None
            config = (batch or {}).get("inputConfig") or {}
            if "fileName" in config:
                raise EmuError("invalid_request", "The emulator serves inline batch requests only.")
            items = ((config.get("requests") or {}).get("requests")) or []
            if not isinstance(items, list) or not items:
                raise EmuError("invalid_request", "inputConfig.requests must not be empty")
            rows: list[tuple[str, Any]] = []
            for index, item in enumerate(items):
                key_name = ((item or {}).get("metadata") or {}).get("key") or str(index)
                rows.append((str(key_name), (item or {}).get("request") or {}))
            headers = dict(request.headers)

            def error(err: EmuError) -> tuple[int, dict[str, Any], dict[str, str]]:
                return wire.render_error(err, model=model)

            answer = _answer_with(
                self.service,
                wire,
                key,
                lambda req_body: wire.parse_generate(req_body, model, headers),
                wire.render_generate,
                lambda body: None,
                error,
            )
            meta = {"model": "models/" + model, "displayName": batch.get("displayName", "")}
            job = self.service.create("google", key, rows, answer, prefix="batches/", meta=meta)
            return self._gemini_batch(job)

        return await self._guard("google", request, create)

    async def gemini_get(self, request: web.Request) -> web.StreamResponse:
        bid = "batches/" + request.match_info["bid"]
        return await self._guard(
            "google", request, lambda key: self._gemini_batch(self._job("google", bid))
        )

    async def gemini_cancel(self, request: web.Request) -> web.StreamResponse:
        bid = "batches/" + request.match_info["bid"]

        def cancel(key: str | None) -> dict[str, Any]:
            self.service.cancel(self._job("google", bid))
            return {}

        return await self._guard("google", request, cancel)


def _from_gemini(request: web.Request) -> bool:
    return "x-goog-api-key" in request.headers or "key" in request.query


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise EmuError("invalid_request", "The request body is not valid JSON.") from None


def _rows(requests: list[Any], id_field: str, body_field: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise EmuError("invalid_request", f"requests.{index}: must be an object")
        custom_id = item.get(id_field)
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
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


def _openai_lines(
    content: bytes, endpoint: str, service: BatchService
) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """(rows, validation errors) of an OpenAI batch input file."""
    rows: list[tuple[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    limit = service.settings.openai_max_requests
    if len(lines) > limit:
        message = f"The batch input file has {len(lines)} requests; the limit is {limit}."
        return [], [{"code": "too_many_requests", "message": message, "param": None}]
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except ValueError:
            errors.append({"code": "invalid_json_line", "message": "Invalid JSON", "line": number})
            continue
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or custom_id in seen:
            errors.append(
                {
                    "code": "duplicate_custom_id" if custom_id else "missing_required_parameter",
                    "message": "custom_id must be present and unique",
                    "line": number,
                }
            )
            continue
        if item.get("url") != endpoint:
            errors.append(
                {
                    "code": "mismatched_endpoint",
                    "message": f"The url must be {endpoint}",
                    "line": number,
                }
            )
            continue
        seen.add(custom_id)
        body = item.get("body") or {}
        models.add(str(body.get("model")))
        rows.append((custom_id, body))
    if len(models) > 1:
        errors.append(
            {
                "code": "mismatched_model",
                "message": "All requests in a batch must use the same model.",
                "line": None,
            }
        )
    return rows, errors


def _lines_bytes(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _jsonl(lines: list[str]) -> web.Response:
    return web.Response(body=_lines_bytes(lines), content_type="application/binary")


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if not k.startswith("_")}


def add_batch_routes(app: web.Application, engine: Engine, wires: Mapping[str, Any]) -> None:
    """Add the batch endpoints of every provider whose wire module is loaded."""
    BatchRoutes(engine, wires).add_to(app)
