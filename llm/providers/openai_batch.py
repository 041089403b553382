"""OpenAI Batch through ``openai.AsyncOpenAI``: a JSONL input file (``files.create``,
purpose ``batch``), ``batches.create`` on ``/v1/chat/completions``, then the output and
error files (``files.content``).

Extends :class:`~llm.providers.openai.OpenAIAdapter`: each line's body is its
``build_request`` and each answer is mapped by its ``parse_response``. A line in the error
file becomes a typed error (:func:`llm.providers.batch_base.row_error`), ``batch_expired``
lines and rows absent from both files (a cancelled batch) become
:class:`~llm.providers.batch_base.BatchRowExpiredError` /
:class:`~llm.providers.batch_base.BatchRowCanceledError`. A batch refused at validation
(``failed``) fails every row with :class:`~llm.providers.batch_base.BatchFailedError`.
Limits: 50,000 requests or 200 MB per input file; one model per batch.
"""

from __future__ import annotations

import json
from typing import Any

from openai._models import construct_type
from openai.types.chat import ChatCompletion

from llm.providers.batch_base import (
    BatchAdapter,
    BatchFailedError,
    BatchRow,
    BatchRowResult,
    BatchStatus,
    batch_model,
    not_run,
    row_error,
)
from llm.providers.openai import PROVIDER, OpenAIAdapter, build_request, map_error, parse_response

ENDPOINT = "/v1/chat/completions"
_RUNNING = {"validating", "in_progress", "finalizing"}
_ENDED = {
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "canceled",
}


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    total = counts.total if counts else 0
    completed = counts.completed if counts else 0
    failed = counts.failed if counts else 0
    if batch.status in _RUNNING:
        state, reason = "in_progress", None
    elif batch.status == "cancelling":
        state, reason = "canceling", None
    else:
        state, reason = "ended", _ENDED.get(batch.status, "failed")
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    message = "; ".join(f"{e.code}: {e.message}" for e in errors) or None
    return BatchStatus(
        batch_id=batch.id,
        state=state,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        total=total,
        succeeded=completed,
        errored=failed,
        processing=max(0, total - completed - failed) if state != "ended" else 0,
        message=message,
    )


class OpenAIBatchAdapter(OpenAIAdapter, BatchAdapter):
    """OpenAI Batch API (files + batches) for Chat Completions rows."""

    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024

    @staticmethod
    def request_body(row: BatchRow) -> dict[str, Any]:
        body = build_request(row.request)
        body.pop("timeout", None)
        return {"custom_id": row.custom_id, "method": "POST", "url": ENDPOINT, "body": body}

    @classmethod
    def input_file(cls, rows: list[BatchRow]) -> bytes:
        """The JSONL input file of ``rows``."""
        lines = (json.dumps(cls.request_body(row), separators=(",", ":")) for row in rows)
        return ("\n".join(lines) + "\n").encode()

    def _error(self, exc: BaseException, model: str = "") -> Exception:
        return map_error(exc if isinstance(exc, Exception) else Exception(exc), model=model)

    async def submit(self, rows: list[BatchRow], *, display_name: str = "") -> str:
        model = batch_model(rows, one_model="an OpenAI").name
        client = self._get_client()
        try:
            uploaded = await client.files.create(
                file=("batch.jsonl", self.input_file(rows)), purpose="batch"
            )
            batch = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"name": display_name[:512]} if display_name else None,
            )
        except Exception as exc:
            raise self._error(exc, model) from None
        return batch.id

    async def status(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._get_client().batches.retrieve(batch_id)
        except Exception as exc:
            raise self._error(exc) from None
        return _status(batch)

    async def cancel(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._get_client().batches.cancel(batch_id)
        except Exception as exc:
            raise self._error(exc) from None
        return _status(batch)

    async def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        content = await self._get_client().files.content(file_id)
        return [json.loads(line) for line in content.text.splitlines() if line.strip()]

    async def results(
        self, batch_id: str, model: str, custom_ids: list[str]
    ) -> list[BatchRowResult]:
        client = self._get_client()
        try:
            batch = await client.batches.retrieve(batch_id)
            input_lines = await self._lines(batch.input_file_id)
            output = await self._lines(batch.output_file_id)
            errors = await self._lines(batch.error_file_id)
        except Exception as exc:
            raise self._error(exc, model) from None
        by_id: dict[str, BatchRowResult] = {}
        for line in output:
            completion = construct_type(type_=ChatCompletion, value=line["response"]["body"])
            by_id[line["custom_id"]] = BatchRowResult(
                custom_id=line["custom_id"],
                kind="succeeded",
                result=parse_response(completion),
            )
        for line in errors:
            by_id[line["custom_id"]] = _error_row(line, model)
        if batch.status == "failed":
            message = _status(batch).message or "the batch failed validation"
            failure = BatchFailedError(message, provider=PROVIDER, model=model)
            return [
                BatchRowResult(custom_id=line["custom_id"], kind="errored", error=failure)
                for line in input_lines
            ]
        missing = "canceled" if batch.status == "cancelled" else "expired"
        return [
            by_id.get(line["custom_id"]) or not_run(PROVIDER, model, missing, line["custom_id"])
            for line in input_lines
        ]


def _error_row(line: dict[str, Any], model: str) -> BatchRowResult:
    custom_id = line["custom_id"]
    top = line.get("error") or {}
    if top.get("code") == "batch_expired":
        return not_run(PROVIDER, model, "expired", custom_id)
    response = line.get("response") or {}
    body = (response.get("body") or {}).get("error") or top
    error = row_error(
        PROVIDER,
        model,
        response.get("status_code"),
        body.get("message") or "",
        kind=body.get("code") or body.get("type"),
        request_id=response.get("request_id"),
    )
    return BatchRowResult(custom_id=custom_id, kind="errored", error=error)
