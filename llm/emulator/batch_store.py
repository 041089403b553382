"""Emulated provider batch jobs: state, timing, expiry and per-row processing.

One :class:`BatchService` per emulator :class:`~llm.emulator.engine.Engine` (see
:func:`batch_service`) holds every batch job and OpenAI file. A job is created ``pending``
and ends at ``created + processing_s`` (every row answered at once, in order, through a
second engine that shares the online engine's prompt caches but has no rate limits, so rows
sharing a prefix read the cache like the real batch APIs) or, if it has not ended
``expiry_s`` (24 h) after creation, ``expired`` (every row expired). ``cancel`` ends a job
that has not finished with its rows ``canceled`` (the next look sees it ended). Time comes
from an injectable wall clock (:attr:`BatchSettings.clock`); jobs advance lazily whenever a
route looks at them, so tests move the clock and poll.

Rows are processed by a provider-specific ``answer`` callable given by the wire routes
(:mod:`llm.emulator.batch_routes`), which returns a :class:`RowResult`: the rendered success
body, or the rendered per-request error (status and body), exactly as the online API would
have answered that request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llm.emulator.engine import Engine

RowKind = Literal["succeeded", "errored", "canceled", "expired"]
JobState = Literal["pending", "canceling", "ended"]
EndReason = Literal["completed", "canceled", "expired", "failed"]

DAY_S = 24 * 3600.0


@dataclass
class BatchSettings:
    """How emulated batches behave; change the fields on a live service in tests."""

    #: Seconds from creation until every row is answered.
    processing_s: float = 2.0
    #: A job not finished this long after creation expires (24 h on every provider here).
    expiry_s: float = DAY_S
    #: Wall clock (epoch seconds); inject a fake to test expiry.
    clock: Callable[[], float] = time.time
    #: Size limits (the providers' documented ones).
    anthropic_max_requests: int = 100_000
    anthropic_max_bytes: int = 256 * 1024 * 1024
    openai_max_requests: int = 50_000
    openai_max_file_bytes: int = 200 * 1024 * 1024
    gemini_max_inline_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class RowResult:
    kind: RowKind
    #: The success body (``succeeded``) or the error body (``errored``).
    body: dict[str, Any] | None = None
    status: int = 200
    request_id: str | None = None


@dataclass
class BatchJob:
    """One batch: its rows (``custom_id`` -> raw request) and, once ended, their results."""

    id: str
    provider: str
    api_key: str | None
    rows: list[tuple[str, Any]]
    created_at: float
    answer: Callable[[Any], RowResult]
    state: JobState = "pending"
    reason: EndReason | None = None
    ended_at: float | None = None
    cancel_at: float | None = None
    results: dict[str, RowResult] = field(default_factory=dict)
    #: Provider-specific fields echoed back (OpenAI endpoint/file ids, Gemini model, ...).
    meta: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if self.state != "ended":
            out["processing"] = len(self.rows)
            return out
        for result in self.results.values():
            out[result.kind] += 1
        return out


class BatchService:
    """Every batch job and uploaded file of one emulator."""

    def __init__(self, engine: Engine, settings: BatchSettings | None = None) -> None:
        self.settings = settings or BatchSettings()
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, dict[str, Any]] = {}
        #: Open resumable upload sessions (Gemini Files API) by upload id.
        self.uploads: dict[str, dict[str, Any]] = {}
        self.created = 0
        # Batch rows skip the online rate limits and latency but share the prompt caches.
        config = replace(engine.config, rpm=None, itpm=None, otpm=None, latency_ms=0)
        self.engine = Engine(config, model_lookup=engine._lookup)
        self.engine.cache = engine.cache
        self.engine.explicit = engine.explicit
        self.online = engine

    def now(self) -> float:
        return self.settings.clock()

    def create(
        self,
        provider: str,
        api_key: str | None,
        rows: list[tuple[str, Any]],
        answer: Callable[[Any], RowResult],
        *,
        prefix: str,
        meta: dict[str, Any] | None = None,
    ) -> BatchJob:
        job = BatchJob(
            id=prefix + secrets.token_hex(12),
            provider=provider,
            api_key=api_key,
            rows=rows,
            created_at=self.now(),
            answer=answer,
            meta=dict(meta or {}),
        )
        self.jobs[job.id] = job
        self.created += 1
        return job

    def get(self, job_id: str) -> BatchJob | None:
        job = self.jobs.get(job_id)
        if job is not None:
            self.advance(job)
        return job

    def cancel(self, job: BatchJob) -> BatchJob:
        self.advance(job)
        if job.state == "pending":
            job.state = "canceling"
            job.cancel_at = self.now()
        return job

    def advance(self, job: BatchJob) -> None:
        """Move ``job`` on to where the clock says it is."""
        if job.state == "ended":
            return
        now = self.now()
        if job.state == "canceling":
            self._end(job, "canceled", {cid: RowResult("canceled") for cid, _ in job.rows})
            return
        done_at = job.created_at + self.settings.processing_s
        expires_at = job.created_at + self.settings.expiry_s
        if done_at <= expires_at and now >= done_at:
            self._end(job, "completed", {cid: job.answer(raw) for cid, raw in job.rows})
        elif now >= expires_at:
            self._end(job, "expired", {cid: RowResult("expired") for cid, _ in job.rows})

    def _end(self, job: BatchJob, reason: EndReason, results: dict[str, RowResult]) -> None:
        job.results = results
        job.state = "ended"
        job.reason = reason
        job.ended_at = self.now()

    def add_file(self, purpose: str, filename: str, content: bytes) -> dict[str, Any]:
        file_id = "file-" + secrets.token_hex(12)
        info = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(self.now()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
            "_content": content,
        }
        self.files[file_id] = info
        return info

    def reset(self) -> None:
        self.jobs.clear()
        self.files.clear()
        self.uploads.clear()
        self.created = 0


def batch_service(engine: Engine) -> BatchService:
    """The batch service of ``engine``'s emulator (created on first use)."""
    service = getattr(engine, "_batch_service", None)
    if service is None:
        service = BatchService(engine)
        engine._batch_service = service  # type: ignore[attr-defined]
    return service
