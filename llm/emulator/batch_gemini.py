"""Emulated Gemini batch mode: ``POST /{v}/models/{model}:batchGenerateContent``,
``GET /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel``.

Input is inline (``inputConfig.requests``; a request body over 20 MB is refused) or a JSONL
file uploaded through the Files API (``inputConfig.fileName``, one
``{"key", "request"}`` a line; :mod:`llm.emulator.batch_gemini_files`). Results come back the
same way: inline in the batch's ``metadata.output.inlinedResponses``, or as a generated JSONL
results file (``metadata.output.responsesFile``, one ``{"key", "response"}`` or
``{"key", "error"}`` a line) to download.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llm.emulator.batch_gemini_files import GeminiFileRoutes, add_gemini_file, gemini_file
from llm.emulator.batch_http import (
    answer_with,
    iso,
    lines_bytes,
    read_json,
)
from llm.emulator.batch_store import BatchJob
from llm.emulator.protocol import EmuError


class GeminiBatchRoutes(GeminiFileRoutes):
    """The batch-mode endpoints (and the Files API they read and write)."""

    def add_gemini(self, app: web.Application) -> None:
        add = app.router.add_route
        add("POST", r"/{version}/models/{model:[^:/]+}:batchGenerateContent", self.gemini_create)
        add("GET", r"/{version}/batches/{bid:[^:/]+}", self.gemini_get)
        add("POST", r"/{version}/batches/{bid:[^:/]+}:cancel", self.gemini_cancel)
        self.add_gemini_files(app)

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
        if job.reason == "completed" and job.meta.get("file_input"):
            metadata["output"] = {"responsesFile": self._results_file(job)}
        elif job.reason == "completed":
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

    def _results_file(self, job: BatchJob) -> str:
        """The name of the job's JSONL results file (written once, when first asked for)."""
        if "responses_file" not in job.meta:
            lines = []
            for custom_id, _ in job.rows:
                row = job.results[custom_id]
                line: dict[str, Any] = {"key": custom_id}
                if row.kind == "succeeded":
                    line["response"] = row.body
                else:
                    line["error"] = (row.body or {}).get("error", row.body)
                lines.append(json.dumps(line, separators=(",", ":")))
            info = add_gemini_file(
                self.service,
                job.api_key,
                lines_bytes(lines),
                display_name=f"{job.id}-results",
                generated=True,
            )
            job.meta["responses_file"] = info["name"]
        return str(job.meta["responses_file"])

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
                rows = _file_rows(gemini_file(self.service, key, str(config["fileName"])))
            else:
                rows = _inline_rows(config)
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
            meta = {
                "model": "models/" + model,
                "displayName": batch.get("displayName", ""),
                "file_input": "fileName" in config,
            }
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


def _inline_rows(config: dict[str, Any]) -> list[tuple[str, Any]]:
    items = ((config.get("requests") or {}).get("requests")) or []
    if not isinstance(items, list) or not items:
        raise EmuError("invalid_request", "inputConfig.requests must not be empty")
    rows: list[tuple[str, Any]] = []
    for index, item in enumerate(items):
        key_name = ((item or {}).get("metadata") or {}).get("key") or str(index)
        rows.append((str(key_name), (item or {}).get("request") or {}))
    return rows


def _file_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of a JSONL input file: one ``{"key": ..., "request": GenerateContentRequest}`` a
    line (a line without a key is named by its line number)."""
    rows: list[tuple[str, Any]] = []
    text = info["_content"].decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise EmuError(
                "invalid_request", f"Line {number} of the input file is not JSON."
            ) from None
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise EmuError("invalid_request", f"Line {number} of the input file has no request.")
        rows.append((str(item.get("key") or number), item["request"]))
    if not rows:
        raise EmuError("invalid_request", "The input file has no requests.")
    return rows
