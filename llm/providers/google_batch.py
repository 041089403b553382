"""Gemini batch mode through ``google.genai`` (``client.aio.batches``), inline requests.

Extends :class:`~llm.providers.google.GoogleAdapter`: each row is its ``build_request``
(``contents`` and ``config``; client-only config fields dropped) with ``metadata.key`` =
``custom_id``, and each inline response is mapped by its ``parse_response``. An inline error
becomes a typed error (:func:`llm.providers.batch_base.row_error`); an expired or cancelled
job's rows become :class:`~llm.providers.batch_base.BatchRowExpiredError` /
:class:`~llm.providers.batch_base.BatchRowCanceledError`. Limit: 20 MB of inline requests
(file input, for larger jobs, is not used).
"""

from __future__ import annotations

from typing import Any

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
from llm.providers.common import field_of
from llm.providers.google import PROVIDER, GoogleAdapter, build_request, map_error, parse_response

#: Config fields that steer the client, not the model (the batch API rejects them).
_CLIENT_ONLY = ("automatic_function_calling", "http_options", "cached_content")
_STATES = {
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "canceled",
    "JOB_STATE_EXPIRED": "expired",
}
_CODE_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429}


def _state_name(job: Any) -> str:
    state = job.state
    return getattr(state, "name", None) or str(state or "")


def _status(job: Any) -> BatchStatus:
    name = _state_name(job)
    reason = _STATES.get(name)
    inlined = (job.dest.inlined_responses or []) if job.dest else []
    ok = sum(1 for item in inlined if item.response is not None)
    return BatchStatus(
        batch_id=job.name,
        state="ended" if reason else "in_progress",
        reason=reason,  # type: ignore[arg-type]
        total=len(inlined),
        succeeded=ok,
        errored=len(inlined) - ok,
        message=str(job.error) if getattr(job, "error", None) else None,
    )


class GoogleBatchAdapter(GoogleAdapter, BatchAdapter):
    """Gemini Batch mode with inline requests (create, get, cancel)."""

    max_requests = 100_000
    max_bytes = 20 * 1024 * 1024

    @staticmethod
    def request_body(row: BatchRow) -> dict[str, Any]:
        kwargs = build_request(row.request)
        config = {k: v for k, v in kwargs["config"].items() if k not in _CLIENT_ONLY}
        return {
            "contents": kwargs["contents"],
            "config": config,
            "metadata": {"key": row.custom_id},
        }

    async def submit(self, rows: list[BatchRow], *, display_name: str = "") -> str:
        model = batch_model(rows, one_model="a Gemini")
        client = self._get_client()
        try:
            job = await client.aio.batches.create(
                model=model.api_id,
                src=[self.request_body(row) for row in rows],  # type: ignore[arg-type]
                config={"display_name": display_name} if display_name else None,
            )
        except Exception as exc:
            raise map_error(exc, model=model.name) from None
        return str(job.name)

    async def status(self, batch_id: str) -> BatchStatus:
        try:
            job = await self._get_client().aio.batches.get(name=batch_id)
        except Exception as exc:
            raise map_error(exc, model="") from None
        return _status(job)

    async def cancel(self, batch_id: str) -> BatchStatus:
        try:
            await self._get_client().aio.batches.cancel(name=batch_id)
        except Exception as exc:
            raise map_error(exc, model="") from None
        return await self.status(batch_id)

    async def results(
        self, batch_id: str, model: str, custom_ids: list[str]
    ) -> list[BatchRowResult]:
        """Every row's outcome; ``custom_ids`` (in submission order) names rows the job never
        answered (expired or cancelled jobs carry no inline responses)."""
        try:
            job = await self._get_client().aio.batches.get(name=batch_id)
        except Exception as exc:
            raise map_error(exc, model=model) from None
        reason = _STATES.get(_state_name(job))
        inlined = (job.dest.inlined_responses or []) if job.dest else []
        by_id: dict[str, BatchRowResult] = {}
        for index, item in enumerate(inlined):
            key = str((item.metadata or {}).get("key") or custom_ids[index])
            if item.response is not None:
                by_id[key] = BatchRowResult(
                    custom_id=key, kind="succeeded", result=parse_response(item.response)
                )
            else:
                by_id[key] = _error_row(key, model, item.error)
        if reason == "failed":
            failure = BatchFailedError("the Gemini batch failed", provider=PROVIDER, model=model)
            return [
                by_id.get(cid) or BatchRowResult(custom_id=cid, kind="errored", error=failure)
                for cid in custom_ids
            ]
        missing = "canceled" if reason == "canceled" else "expired"
        return [by_id.get(cid) or not_run(PROVIDER, model, missing, cid) for cid in custom_ids]


def _error_row(custom_id: str, model: str, error: Any) -> BatchRowResult:
    code = field_of(error, "code")
    status_name = field_of(error, "status")
    status = code if isinstance(code, int) else _CODE_STATUS.get(str(status_name), 500)
    typed = row_error(
        PROVIDER, model, status, str(field_of(error, "message") or ""), kind=status_name
    )
    return BatchRowResult(custom_id=custom_id, kind="errored", error=typed)
