"""Gemini batch mode through ``google.genai`` (``client.aio.batches``, ``client.aio.files``):
inline requests, or a JSONL input file when they pass the 20 MB inline limit.

Extends :class:`~llm.providers.google.GoogleAdapter`: each row is its ``build_request``
(``contents`` and ``config``; client-only config fields dropped) with ``metadata.key`` =
``custom_id``, and each response is mapped by its ``parse_response``. A batch whose inline
requests would pass :attr:`GoogleBatchAdapter.inline_max_bytes` is sent as a file instead:
one ``{"key": custom_id, "request": GenerateContentRequest}`` line per row (the request in the
API's JSON form, converted by the SDK's own inline-request mapping), uploaded with
``files.upload`` and named by ``batches.create(src="files/...")``; its results come back as a
results file (``dest.file_name``, fetched with ``files.download``), one ``{"key", "response"}``
or ``{"key", "error"}`` a line. An error becomes a typed error
(:func:`llm.providers.batch_base.row_error`); an expired or cancelled job's rows become
:class:`~llm.providers.batch_base.BatchRowExpiredError` /
:class:`~llm.providers.batch_base.BatchRowCanceledError`. Limits: 20 MB inline, 2 GB per file.
"""

from __future__ import annotations

import io
import json
from typing import Any

from google.genai import batches as genai_batches
from google.genai import types

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
    #: A batch larger than this goes as an input file (2 GB: the Files API's limit).
    max_bytes = 2 * 1024 * 1024 * 1024
    #: Inline requests up to this size (the API refuses a request body over 20 MB; the
    #: margin covers the envelope around the rows).
    inline_max_bytes = 20 * 1024 * 1024 - 64 * 1024

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
        bodies = [self.request_body(row) for row in rows]
        size = sum(len(json.dumps(body, separators=(",", ":"), default=str)) + 1 for body in bodies)
        try:
            src: Any = bodies
            if size > self.inline_max_bytes:
                src = await self._upload(client, bodies, display_name)
            job = await client.aio.batches.create(
                model=model.api_id,
                src=src,
                config={"display_name": display_name} if display_name else None,
            )
        except Exception as exc:
            raise map_error(exc, model=model.name) from None
        return str(job.name)

    @staticmethod
    def input_file(client: Any, bodies: list[dict[str, Any]]) -> bytes:
        """The JSONL input file of ``bodies`` (as :meth:`request_body` builds them)."""
        lines = []
        for body in bodies:
            wire = genai_batches._InlinedRequest_to_mldev(client._api_client, body)
            line = {"key": body["metadata"]["key"], "request": wire["request"]}
            lines.append(json.dumps(line, separators=(",", ":"), default=str))
        return ("\n".join(lines) + "\n").encode()

    async def _upload(self, client: Any, bodies: list[dict[str, Any]], display_name: str) -> str:
        """Upload the rows as a JSONL file; returns its name (``files/...``)."""
        config: dict[str, Any] = {"mime_type": "application/jsonl"}
        if display_name:
            config["display_name"] = display_name
        data = io.BytesIO(self.input_file(client, bodies))
        uploaded = await client.aio.files.upload(file=data, config=config)
        return str(uploaded.name)

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
        if job.dest and job.dest.file_name:
            try:
                data = await self._get_client().aio.files.download(file=job.dest.file_name)
            except Exception as exc:
                raise map_error(exc, model=model) from None
            by_id = _file_results(data, model)
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


def _file_results(data: bytes, model: str) -> dict[str, BatchRowResult]:
    """The rows of a results file, by key."""
    out: dict[str, BatchRowResult] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        key = str(line.get("key") or "")
        if line.get("response") is not None:
            # the SDK's own mapping of the API's JSON (as for inline responses)
            mapped = genai_batches._InlinedResponse_from_mldev({"response": line["response"]})
            response = types.GenerateContentResponse._from_response(
                response=mapped["response"], kwargs={}
            )
            out[key] = BatchRowResult(
                custom_id=key, kind="succeeded", result=parse_response(response)
            )
        else:
            out[key] = _error_row(key, model, line.get("error") or {})
    return out
