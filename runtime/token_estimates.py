"""How many output tokens to reserve for a request before its answer says how many it used.

Anthropic counts a request against its output-tokens-per-minute limit from ``max_tokens``
at admission and corrects the count when the answer ends; OpenAI's combined tokens-per-minute
limit counts the prompt plus the output the same way. A client that reserves ``max_tokens``
for every request and refunds the difference only when the answer ends starves itself when
``max_tokens`` is large and answers are short: with a bucket holding about one second of the
limit (see :mod:`runtime.limiter`), a single 4,096-token reservation can empty it, and the
refund arrives seconds later, when the bucket is already full again (refunds above capacity
are lost).

:class:`OutputEstimate` learns instead what share of ``max_tokens`` answers of this account
really use: it keeps the last :data:`WINDOW` ratios ``output_tokens / max_tokens`` and
reserves ``max_tokens`` times a high quantile of them (:data:`QUANTILE`, plus
:data:`MARGIN`), never more than ``max_tokens`` and never less than one token. Until an
answer has been seen it reserves ``max_tokens`` (the provider's own accounting; the first
request of an account goes alone anyway, see the calibration probe). An underestimate is
corrected when the answer is settled: the bucket is debited the difference and may go
negative, which later requests repay, so the long-run rate holds either way; the quantile
keeps such debts small so that the provider's bucket, which may count ``max_tokens`` at
admission, is not overrun in between.
"""

from __future__ import annotations

import math
from collections import deque

#: Ratios remembered (the most recent answers of the account).
WINDOW = 256
#: Quantile of the remembered ratios reserved for a new request.
QUANTILE = 0.9
#: Added to the quantile (answers vary).
MARGIN = 0.05
#: Ratios learned before the quantile is recomputed (it is sorted then; at first, after
#: every answer while fewer than this are known).
_REFRESH_EVERY = 16


class OutputEstimate:
    """Output tokens to reserve for one request, learned from the account's answers."""

    __slots__ = ("_ratios", "_ratio", "_since_refresh")

    def __init__(self) -> None:
        self._ratios: deque[float] = deque(maxlen=WINDOW)
        self._ratio: float | None = None
        self._since_refresh = 0

    @property
    def ratio(self) -> float | None:
        """The share of ``max_tokens`` reserved now (None before the first answer)."""
        return self._ratio

    def estimate(self, max_tokens: int) -> int:
        """Tokens to reserve for a request capped at ``max_tokens``."""
        if max_tokens <= 0:
            return 0
        if self._ratio is None:
            return max_tokens
        return max(1, min(max_tokens, math.ceil(max_tokens * self._ratio)))

    def learn(self, output_tokens: int, max_tokens: int) -> None:
        """Remember one answer's output against the ``max_tokens`` it was sent with."""
        if max_tokens <= 0 or output_tokens < 0:
            return
        self._ratios.append(min(1.0, output_tokens / max_tokens))
        self._since_refresh += 1
        if len(self._ratios) <= _REFRESH_EVERY or self._since_refresh >= _REFRESH_EVERY:
            self._refresh()

    def _refresh(self) -> None:
        ordered = sorted(self._ratios)
        index = min(len(ordered) - 1, int(QUANTILE * len(ordered)))
        self._ratio = min(1.0, ordered[index] + MARGIN)
        self._since_refresh = 0
