"""Emulated Gemini batch mode (inline requests): ``POST /{v}/models/{model}:batchGenerateContent``,
``GET /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel``; inline input over 20 MB is
refused. Results come back inline in the batch's ``metadata.output``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llm.emulator.batch_http import (
    BatchRoutesBase,
    answer_with,
    iso,
    read_json,
)
from llm.emulator.batch_store import BatchJob
from llm.emulator.protocol import EmuError


class GeminiBatchRoutes(BatchRoutesBase):
    """The batch-mode endpoints."""

    def add_gemini(self, app: web.Application) -> None:
        add = app.router.add_route
        add("POST", r"/{version}/models/{model:[^:/]+}:batchGenerateContent", self.gemini_create)
        add("GET", r"/{version}/batches/{bid:[^:/]+}", self.gemini_get)
        add("POST", r"/{version}/batches/{bid:[^:/]+}:cancel", self.gemini_cancel)

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
            "createTime": iso(job.created_at),
            "updateTime": iso(job.ended_at or job.created_at),
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
            metadata["endTime"] = iso(job.ended_at)
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
            body = read_json(raw)
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

            answer = answer_with(
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
