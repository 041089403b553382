"""One ledger row: :class:`LedgerRecord`, the typed value every ledger writer stores.

The columns and what each means are listed in :mod:`runtime.ledger_store` (with the Parquet
schema). This module holds only the value, with no Parquet or pyarrow import, so that the
engine can meter a call in a process that writes no ledger (the in-process runtime).
Money is rounded to ten decimal places (half-even), the Parquet column's scale.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm.pricing import cost_columns, usage_columns
from llm.types import LLMResponse

_QUANTUM = Decimal("1e-10")
_ZERO = Decimal(0)
_COST_FIELDS = ("input_cost", "output_cost", "cache_read_cost", "cache_write_cost")


class LedgerRecord(BaseModel):
    """One ledger row; :mod:`runtime.ledger_store` describes each field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(min_length=1)
    job_id: str
    row_id: str | None = None
    ts: datetime
    provider: str
    model: str
    api_model: str | None = None
    status: str = "ok"
    error_type: str | None = None
    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0)
    cache_write_tokens: int = Field(0, ge=0)
    cache_write_1h_tokens: int = Field(0, ge=0)
    reasoning_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    input_cost: Decimal = _ZERO
    output_cost: Decimal = _ZERO
    cache_read_cost: Decimal = _ZERO
    cache_write_cost: Decimal = _ZERO
    total_cost: Decimal = _ZERO
    cache_savings: Decimal = _ZERO
    latency_s: float = 0.0
    attempts: int = Field(1, ge=0)
    streamed: bool = False
    price_effective_from: date | None = None
    tier: Literal["standard", "batch"] = "standard"

    @model_validator(mode="before")
    @classmethod
    def _fill_totals(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("total_tokens") is None:
                data["total_tokens"] = data.get("input_tokens", 0) + data.get("output_tokens", 0)
            if data.get("total_cost") is None:
                data["total_cost"] = sum((Decimal(data.get(f, 0)) for f in _COST_FIELDS), _ZERO)
        return data

    @field_validator("tier", mode="before")
    @classmethod
    def _standard_by_default(cls, value: Any) -> Any:
        return "standard" if value is None else value

    @field_validator("row_id", mode="before")
    @classmethod
    def _row_id_text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator(*_COST_FIELDS, "total_cost", "cache_savings")
    @classmethod
    def _ten_places(cls, value: Decimal) -> Decimal:
        return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)

    @classmethod
    def from_response(
        cls,
        response: LLMResponse,
        *,
        job_id: str,
        row_id: str | None = None,
        request_id: str | None = None,
        ts: datetime | None = None,
        api_model: str | None = None,
        cache_savings: Decimal | None = None,
        streamed: bool = False,
    ) -> LedgerRecord:
        """A successful request's row. ``request_id`` defaults to the response's, else a uuid.

        Pass the runtime's own id for ``request_id`` so that re-sent appends deduplicate.
        """
        savings = cache_savings if cache_savings is not None else response.cache_savings
        return cls(
            request_id=request_id or response.request_id or uuid.uuid4().hex,
            job_id=job_id,
            row_id=row_id,
            ts=ts or datetime.now(UTC),
            provider=response.provider,
            model=response.model,
            api_model=api_model or response.metadata.get("api_model"),
            latency_s=response.latency_s,
            attempts=response.attempts,
            streamed=streamed,
            price_effective_from=response.metadata.get("price_effective_from"),
            tier=response.metadata.get("tier", "standard"),
            **usage_columns(response.usage),
            **cost_columns(response.cost, savings),
        )

    def to_row(self) -> dict[str, Any]:
        """The record as a dict keyed by ledger column."""
        return self.model_dump()
