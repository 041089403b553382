"""The provider batch-API seam: neutral types shared by the three batch adapters.

A batch adapter (:mod:`llm.providers.anthropic_batch`, :mod:`llm.providers.openai_batch`,
:mod:`llm.providers.google_batch`) extends its provider's online adapter (same SDK client,
same request builder, same response mapper) with four calls: :meth:`BatchAdapter.submit`
rows (``custom_id`` + :class:`~llm.providers.base.ProviderRequest`), :meth:`status`,
:meth:`results` (every row as a :class:`BatchRowResult`: a
:class:`~llm.providers.base.ProviderResult`, or a typed :class:`~llm.exceptions.LLMError`)
and :meth:`cancel`. Batches are named by the provider's id, which callers journal the
moment :meth:`submit` returns. :func:`row_error` maps a row's HTTP status and message to
the same error classes the online adapters raise; rows a batch never ran end as
:class:`BatchRowExpiredError` or :class:`BatchRowCanceledError` (retryable).

The per-provider modules depend on this one, never the reverse: the adapter for a provider
name comes from :func:`llm.providers.factory.make_batch_adapter`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from llm.exceptions import (
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    LLMError,
    ModelNotFoundError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
)
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest, ProviderResult

BatchState = Literal["in_progress", "canceling", "ended"]
EndReason = Literal["completed", "canceled", "expired", "failed"]
RowKind = Literal["succeeded", "errored", "canceled", "expired"]


class BatchRowExpiredError(ProviderError):
    """The batch reached its 24-hour window before running this row (nothing was billed).
    A :class:`~llm.exceptions.ProviderError`, so a batch job retries the row on rerun."""


class BatchRowCanceledError(ProviderError):
    """The batch was canceled before running this row (nothing was billed); retried on
    rerun like any :class:`~llm.exceptions.ProviderError`."""


class BatchFailedError(LLMError):
    """The provider refused the whole batch at validation (no row ran)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class BatchRow(_Frozen):
    """One request of a batch: ``custom_id`` (1-64 of ``[A-Za-z0-9_-]``) names it."""

    custom_id: str
    request: ProviderRequest


class BatchStatus(_Frozen):
    """Where a batch is: its state, why it ended, and its row counts."""

    batch_id: str
    state: BatchState
    reason: EndReason | None = None
    total: int = 0
    succeeded: int = 0
    errored: int = 0
    #: Rows not finished yet (unknown counts are reported as still processing).
    processing: int = 0
    message: str | None = None

    @property
    def ended(self) -> bool:
        return self.state == "ended"


class BatchRowResult(_Frozen):
    """One row's outcome: ``result`` when it succeeded, else ``error``."""

    custom_id: str
    kind: RowKind
    result: ProviderResult | None = None
    error: LLMError | None = None


def row_error(
    provider: str,
    model: str,
    status: int | None,
    message: str,
    *,
    kind: str | None = None,
    request_id: str | None = None,
) -> LLMError:
    """The typed error of a batch row answered with HTTP ``status`` (``kind``: the provider's
    error type/code when the status alone is ambiguous)."""
    common: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status": status,
        "request_id": request_id,
    }
    text = message or f"batch row failed with status {status}"
    lowered = (kind or "").lower() + " " + text.lower()
    if status in (401, 403):
        return AuthenticationError(text, **common)
    if status == 404:
        return ModelNotFoundError(text, **common)
    if status == 429:
        return RateLimitError(text, **common)
    if status in (503, 529) or "overloaded" in lowered:
        return ProviderOverloadedError(text, **common)
    if status == 400 and ("context" in lowered or "too long" in lowered):
        return ContextLengthError(text, **common)
    if status is not None and 400 <= status < 500:
        return InvalidRequestError(text, **common)
    return ProviderError(text, **common)


def not_run(provider: str, model: str, kind: RowKind, custom_id: str) -> BatchRowResult:
    """The result of a row the batch never ran (``expired`` or ``canceled``)."""
    cls = BatchRowExpiredError if kind == "expired" else BatchRowCanceledError
    error = cls(f"batch row {custom_id} {kind} before it ran", provider=provider, model=model)
    return BatchRowResult(custom_id=custom_id, kind=kind, error=error)


class BatchAdapter(abc.ABC):
    """What each provider's batch adapter adds to its online adapter."""

    #: The provider's documented limits on one batch.
    max_requests: ClassVar[int]
    max_bytes: ClassVar[int]

    @abc.abstractmethod
    async def submit(self, rows: list[BatchRow], *, display_name: str = "") -> str:
        """Create a batch of ``rows`` (one model); returns the provider's batch id."""

    @abc.abstractmethod
    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's current state and counts."""

    @abc.abstractmethod
    async def results(
        self, batch_id: str, model: str, custom_ids: list[str]
    ) -> list[BatchRowResult]:
        """Every row's outcome of an ended batch, in ``custom_ids`` order (the rows as
        submitted; ``model``: the registry name, for errors)."""

    @abc.abstractmethod
    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to cancel the batch."""

    @staticmethod
    @abc.abstractmethod
    def request_body(row: BatchRow) -> dict[str, Any]:
        """The wire form of one row, as submitted (for size checks and tests)."""


def in_order(
    results: list[BatchRowResult], custom_ids: list[str], provider: str, model: str
) -> list[BatchRowResult]:
    """``results`` in submission order; a submitted row with no result line counts as expired."""
    by_id = {row.custom_id: row for row in results}
    return [by_id.get(cid) or not_run(provider, model, "expired", cid) for cid in custom_ids]


def batch_model(rows: list[BatchRow], *, one_model: str | None = None) -> ModelInfo:
    """The model of a batch about to be submitted: ``rows`` must not be empty and, when the
    provider's batch carries one model (``one_model``: the provider's name for errors), all
    rows use the same one."""
    if not rows:
        raise ValueError("a batch needs at least one row")
    if one_model is not None:
        models = {row.request.model.api_id for row in rows}
        if len(models) != 1:
            raise ValueError(f"{one_model} batch carries one model, got {sorted(models)}")
    return rows[0].request.model
