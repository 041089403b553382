"""Emulated Anthropic Message Batches: ``POST /v1/messages/batches``, ``GET .../{id}``,
``GET .../{id}/results`` (JSONL), ``POST .../{id}/cancel``. Rows answer with
``usage.service_tier = "batch"``. Limits: 100,000 requests or 256 MB per batch.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llm.emulator.batch_http import (
    BatchRoutesBase,
    answer_with,
    id_rows,
    iso,
    jsonl,
    read_json,
)
from llm.emulator.batch_store import BatchJob
from llm.emulator.protocol import EmuError


class AnthropicBatchRoutes(BatchRoutesBase):
    """The Message Batches endpoints."""

    def add_anthropic(self, app: web.Application) -> None:
        add = app.router.add_route
        add("POST", "/v1/messages/batches", self.anthropic_create)
        add("GET", "/v1/messages/batches/{bid}", self.anthropic_get)
        add("GET", "/v1/messages/batches/{bid}/results", self.anthropic_results)
        add("POST", "/v1/messages/batches/{bid}/cancel", self.anthropic_cancel)

    def _anthropic_batch(self, job: BatchJob, request: web.Request) -> dict[str, Any]:
        ended = job.state == "ended"
        origin = f"{request.scheme}://{request.host}"
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": {"pending": "in_progress"}.get(job.state, job.state),
            "request_counts": {k: v for k, v in job.counts().items()},
            "ended_at": iso(job.ended_at),
            "created_at": iso(job.created_at),
            "expires_at": iso(job.created_at + self.service.settings.expiry_s),
            "archived_at": None,
            "cancel_initiated_at": iso(job.cancel_at),
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
            body = read_json(raw)
            requests = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(requests, list) or not requests:
                raise EmuError("invalid_request", "requests: List should have at least 1 item")
            if len(requests) > limits.anthropic_max_requests:
                raise EmuError(
                    "invalid_request",
                    f"requests: the batch has {len(requests)} requests; the maximum is "
                    f"{limits.anthropic_max_requests}.",
                )
            rows = id_rows(requests, "custom_id", "params")
            headers = dict(request.headers)

            def mark(message: dict[str, Any]) -> None:
                message.setdefault("usage", {})["service_tier"] = "batch"

            def parse(params: Any) -> Any:
                if isinstance(params, dict) and params.get("stream"):
                    raise EmuError("invalid_request", "stream: streaming is not supported")
                return wire.parse_messages(params, headers)

            answer = answer_with(
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
            return jsonl(lines)

        return await self._guard("anthropic", request, results)
