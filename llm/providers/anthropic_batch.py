"""Anthropic Message Batches through ``anthropic.AsyncAnthropic`` (``client.messages.batches``).

Extends :class:`~llm.providers.anthropic.AnthropicAdapter`: rows are built by its
``build_request`` (cache breakpoints included, so rows sharing a prefix read the cache inside
the batch) and answers are mapped by its ``parse_response``. An errored row becomes the same
typed error an online call would raise (:func:`llm.providers.batch_base.row_error`); expired
and canceled rows become :class:`~llm.providers.batch_base.BatchRowExpiredError` /
:class:`~llm.providers.batch_base.BatchRowCanceledError`. Limits: 100,000 requests or 256 MB.
"""

from __future__ import annotations

from typing import Any

from llm.providers.anthropic import (
    PROVIDER,
    AnthropicAdapter,
    build_request,
    map_error,
    parse_response,
)
from llm.providers.batch_base import (
    BatchAdapter,
    BatchRow,
    BatchRowResult,
    BatchStatus,
    batch_model,
    in_order,
    not_run,
    row_error,
)
from llm.providers.common import field_of, redact_secret

_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    state = batch.processing_status
    reason = None
    if state == "ended":
        total_done = counts.succeeded + counts.errored
        if counts.canceled and not total_done:
            reason = "canceled"
        elif counts.expired and not total_done:
            reason = "expired"
        else:
            reason = "completed"
    return BatchStatus(
        batch_id=batch.id,
        state=state,
        reason=reason,
        total=counts.processing
        + counts.succeeded
        + counts.errored
        + counts.canceled
        + counts.expired,
        succeeded=counts.succeeded,
        errored=counts.errored,
        processing=counts.processing,
    )


def _errored(custom_id: str, model: str, error: Any) -> BatchRowResult:
    inner = field_of(error, "error") or error
    kind = field_of(inner, "type")
    message = field_of(inner, "message") or ""
    status = _STATUS_OF_TYPE.get(kind or "", 500)
    request_id = field_of(error, "request_id")
    typed = row_error(PROVIDER, model, status, message, kind=kind, request_id=request_id)
    return BatchRowResult(custom_id=custom_id, kind="errored", error=typed)


class AnthropicBatchAdapter(AnthropicAdapter, BatchAdapter):
    """Anthropic Message Batches (create, retrieve, results, cancel)."""

    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024

    @staticmethod
    def request_body(row: BatchRow) -> dict[str, Any]:
        return {"custom_id": row.custom_id, "params": build_request(row.request)}

    async def submit(self, rows: list[BatchRow], *, display_name: str = "") -> str:
        batch_model(rows)  # Anthropic batches may mix models
        client = self._client()
        try:
            batch = await client.messages.batches.create(
                requests=[self.request_body(row) for row in rows]  # type: ignore[misc]
            )
        except Exception as exc:
            raise self._mapped(exc, rows[0].request) from None
        return batch.id

    async def status(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._client().messages.batches.retrieve(batch_id)
        except Exception as exc:
            raise self._batch_error(exc) from None
        return _status(batch)

    async def cancel(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._client().messages.batches.cancel(batch_id)
        except Exception as exc:
            raise self._batch_error(exc) from None
        return _status(batch)

    async def results(
        self, batch_id: str, model: str, custom_ids: list[str]
    ) -> list[BatchRowResult]:
        out: list[BatchRowResult] = []
        try:
            lines = await self._client().messages.batches.results(batch_id)
            async for line in lines:
                result = line.result
                if result.type == "succeeded":
                    out.append(
                        BatchRowResult(
                            custom_id=line.custom_id,
                            kind="succeeded",
                            result=parse_response(result.message),
                        )
                    )
                elif result.type == "errored":
                    out.append(_errored(line.custom_id, model, result.error))
                else:
                    out.append(not_run(PROVIDER, model, result.type, line.custom_id))
        except Exception as exc:
            raise self._batch_error(exc) from None
        return in_order(out, custom_ids, PROVIDER, model)

    def _batch_error(self, exc: BaseException) -> Exception:
        return redact_secret(map_error(exc, model=""), self.settings.api_key(PROVIDER))
