"""Emulated OpenAI Batch: ``POST /v1/files`` (multipart, purpose ``batch``),
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. Output and error files are JSONL
files; a file over 200 MB is refused and one over 50,000 lines fails the batch at
validation. Rows answer with ``service_tier = "batch"``. Gemini's ``/v1/batches/{id}`` shares
the path: such requests (a Gemini key) go to the Gemini routes.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llm.emulator.batch_http import (
    BatchRoutesBase,
    answer_with,
    from_gemini,
    lines_bytes,
    public,
    read_json,
)
from llm.emulator.batch_store import BatchJob, BatchService
from llm.emulator.protocol import EmuError

_OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")


class OpenAIBatchRoutes(BatchRoutesBase):
    """The Files and Batches endpoints."""

    def add_openai(self, app: web.Application) -> None:
        add = app.router.add_route
        add("POST", "/v1/files", self.openai_upload)
        add("GET", "/v1/files/{fid}", self.openai_file)
        add("GET", "/v1/files/{fid}/content", self.openai_file_content)
        add("POST", "/v1/batches", self.openai_create)
        add("GET", "/v1/batches/{bid}", self.openai_get)
        add("POST", "/v1/batches/{bid}/cancel", self.openai_cancel)

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
            info = files.add_file("batch_output", "batch_output.jsonl", lines_bytes(ok))
            job.meta["output_file_id"] = info["id"]
        else:
            job.meta["output_file_id"] = None
        if bad:
            info = files.add_file("batch_output", "batch_errors.jsonl", lines_bytes(bad))
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
            return public(info)

        return await self._guard("openai", request, upload)

    def _openai_file_info(self, fid: str) -> dict[str, Any]:
        info = self.service.files.get(fid)
        if info is None:
            raise EmuError("not_found", f"No such File object: {fid}")
        return info

    async def openai_file(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["fid"]
        if from_gemini(request):  # Gemini's /v1/files/{id}[:download] shares OpenAI's path
            if fid.endswith(":download"):
                return await self.gemini_download(request)
            return await self.gemini_file_get(request)
        return await self._guard("openai", request, lambda key: public(self._openai_file_info(fid)))

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
            body = read_json(raw)
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

            answer = answer_with(
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
        if from_gemini(request):  # Gemini's /v1/batches/{id} shares OpenAI's path
            return await self.gemini_get(request)
        return await self._guard(
            "openai", request, lambda key: self._openai_batch(self._job("openai", bid))
        )

    async def openai_cancel(self, request: web.Request) -> web.StreamResponse:
        bid = request.match_info["bid"]
        if from_gemini(request):
            return await self.gemini_cancel(request)

        def cancel(key: str | None) -> dict[str, Any]:
            job = self.service.cancel(self._job("openai", bid))
            return self._openai_batch(job)

        return await self._guard("openai", request, cancel)

    # Gemini's routes (llm.emulator.batch_gemini) answer Gemini requests on the shared path.
    async def gemini_get(self, request: web.Request) -> web.StreamResponse:
        return self._error("openai", EmuError("not_found", "Gemini batches are not served here."))

    async def gemini_cancel(self, request: web.Request) -> web.StreamResponse:
        return await self.gemini_get(request)

    async def gemini_download(self, request: web.Request) -> web.StreamResponse:
        return await self.gemini_get(request)

    async def gemini_file_get(self, request: web.Request) -> web.StreamResponse:
        return await self.gemini_get(request)


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
