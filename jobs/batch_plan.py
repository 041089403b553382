"""How ``--mode batch`` groups prepared rows into provider batches.

:func:`plan_batches` groups rows by provider and model (first-seen order) and splits each
group so no batch passes its provider's limits (request count and bytes, from
:class:`~llm.providers.batch_base.BatchAdapter`); :meth:`PlannedBatch.estimate` is the upper
cost bound the budget cap reserves before a batch is submitted (batch prices, every row using
its whole output budget). :func:`batch_cache_ttl` gives Anthropic rows sharing a cached
prefix the 1-hour cache TTL. Nothing here calls a provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from jobs.batch_input import RowRequest
from llm.models import ModelInfo
from llm.pricing import estimate_cost
from llm.providers.base import ProviderRequest
from llm.providers.batch_base import BatchRow
from llm.providers.common import estimate_prompt_tokens

_ZERO = Decimal(0)


@dataclass
class PlannedBatch:
    """Rows of one provider and model that fit in one batch."""

    provider: str
    model: ModelInfo
    rows: list[RowRequest] = field(default_factory=list)
    requests: list[ProviderRequest] = field(default_factory=list)
    size_bytes: int = 0

    def estimate(self) -> Decimal:
        """Upper cost bound at batch prices (every row uses its whole output budget)."""
        return sum(
            (
                estimate_cost(
                    req.model, estimate_prompt_tokens(req), req.max_tokens, service_tier="batch"
                ).total_cost
                for req in self.requests
            ),
            _ZERO,
        )


def batch_cache_ttl(requests: list[ProviderRequest]) -> list[ProviderRequest]:
    """Anthropic rows of one batch that cache a prefix use the 1-hour TTL when at least two
    of them cache (a batch runs for minutes to hours, so a 5-minute entry would expire between
    rows and be written again at 1.25x; one 2x write then serves every later row at 0.1x)."""
    caching = [req for req in requests if req.enable_caching and req.model.provider == "anthropic"]
    if len(caching) < 2:
        return requests
    chosen = {id(req) for req in caching}
    return [
        req.model_copy(update={"cache_ttl": "1h"}) if id(req) in chosen else req for req in requests
    ]


def plan_batches(
    items: list[tuple[RowRequest, ProviderRequest]],
    limits: Callable[[str], tuple[int, int]],
    body_size: Callable[[str, BatchRow], int],
) -> list[PlannedBatch]:
    """Group rows by provider and model (first-seen order) and split each group so no batch
    passes ``limits(provider)`` = (max requests, max bytes)."""
    groups: dict[tuple[str, str], list[PlannedBatch]] = {}
    for row, request in items:
        provider = request.model.provider
        max_requests, max_bytes = limits(provider)
        size = body_size(provider, BatchRow(custom_id=row.request_id, request=request))
        chunks = groups.setdefault((provider, request.model.name), [])
        if (
            not chunks
            or len(chunks[-1].rows) >= max_requests
            or chunks[-1].size_bytes + size > max_bytes
        ):
            chunks.append(PlannedBatch(provider, request.model))
        chunk = chunks[-1]
        chunk.rows.append(row)
        chunk.requests.append(request)
        chunk.size_bytes += size
    return [chunk for chunks in groups.values() for chunk in chunks]
