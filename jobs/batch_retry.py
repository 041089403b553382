"""In-run retry of the rows a provider batch did not answer: which rows, and by which path.

When a batch ends, a row that expired before it ran, or failed with a retryable error
(429, 5xx, overloaded: :attr:`~llm.exceptions.LLMError.retryable`), is not written as an error
yet: :class:`RowRetries` holds it (at most ``max_retries`` times per row and run) and the run
sends it again in the same run, within the budget:

* in a **new batch** when the deadline still leaves a whole batch window (24 h) or the run
  has no deadline (``--mode batch`` without ``--deadline``);
* **online** otherwise (``--mode auto --deadline 36h`` and the first batch expired after
  24 h), when the run has an online call; without one the row is written as a retryable
  error, so the next run sends it.

Rows a batch never ran because it was **canceled** are not retried in the run (somebody
canceled it); they are written as retryable errors as before. A row that fails again after
its last retry is written with its last error. Nothing is paid twice: an expired or canceled
row was never billed, and an errored row's retry gets a new batch id in the journal, so a
crash re-attaches to the retry instead of sending it a third time.

:func:`send_online` is the online path: each held row through the run's online call (the
service's, so the runtime's retries and metering apply) at standard prices, one at a time,
the budget cap checked first; the answer is written at the price the call was metered at and
recorded in the job's ledger.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from jobs.batch_core import RowResults
from jobs.batch_input import RowRequest
from jobs.batch_ledger import ActorLedger, record_durably
from llm.exceptions import LLMError
from llm.pricing import estimate_cost
from llm.providers.base import ProviderRequest
from llm.providers.batch_base import BatchRowCanceledError
from llm.providers.common import estimate_prompt_tokens
from llm.types import LLMResponse
from runtime.ledger_store import LedgerRecord, LedgerWriter

#: The providers' batch window: a new batch needs this much of the deadline left.
BATCH_WINDOW_S = 24 * 3600.0

RetryPath = Literal["batch", "online", "none"]
OnlineCall = Callable[[RowRequest], Awaitable[LLMResponse]]
#: The run's budget check: (upper estimate, rows) -> whether they may start.
Fits = Callable[[Decimal, int], bool]


@dataclass
class RowRetries:
    """Which rows to send again in this run, and by which path (see the module docstring)."""

    #: Seconds from the run's start until results are needed (None: no deadline).
    deadline_s: float | None = None
    max_retries: int = 1
    clock: Callable[[], float] = time.monotonic
    #: Whether the run can send rows online.
    can_go_online: bool = False
    started_at: float = field(default=0.0)
    attempts: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    #: Rows sent again so far, by path.
    sent: dict[str, int] = field(default_factory=lambda: {"batch": 0, "online": 0})

    def __post_init__(self) -> None:
        if not self.started_at:
            self.started_at = self.clock()

    def wants(self, row_id: str, error: BaseException) -> bool:
        """Hold ``row_id`` for a retry in this run (True), or write its error (False)."""
        if isinstance(error, BatchRowCanceledError):
            return False
        if not (isinstance(error, LLMError) and error.retryable):
            return False
        if self.attempts.get(row_id, 0) >= self.max_retries or self.path() == "none":
            return False
        self.attempts[row_id] = self.attempts.get(row_id, 0) + 1
        self.pending.append(row_id)
        return True

    def path(self) -> RetryPath:
        """How held rows go out now: a new batch while the deadline allows one, else online."""
        if self.deadline_s is None:
            return "batch"
        left = self.deadline_s - (self.clock() - self.started_at)
        if left >= BATCH_WINDOW_S:
            return "batch"
        return "online" if self.can_go_online else "none"

    def take(self) -> list[str]:
        """The rows held since the last call (in the order they ended)."""
        rows, self.pending = self.pending, []
        return rows


async def send_online(
    items: Iterable[tuple[RowRequest, ProviderRequest]],
    *,
    call: OnlineCall,
    fits: Fits,
    results: RowResults,
    ledger: ActorLedger | LedgerWriter | None,
) -> None:
    """Held rows through the online path at standard prices (see the module docstring)."""
    for row, request in items:
        estimate = estimate_cost(
            request.model, estimate_prompt_tokens(request), request.max_tokens
        ).total_cost
        if not fits(estimate, 1):
            continue  # counted as not started; a smaller row may still fit
        try:
            response = await call(row)
        except LLMError as error:
            results.error(row.row_id, row.request_id, error, request.model.name)
            continue
        now = datetime.now(UTC)
        # at the price the call was metered at (nothing priced here)
        results.ok(row.row_id, row.request_id, response, response.latency_s)
        record = LedgerRecord.from_response(
            response, job_id=results.job_id, row_id=row.row_id, request_id=row.request_id, ts=now
        )
        await record_durably(ledger, [record])
