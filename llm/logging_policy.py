"""What the service logs (logger ``"llm"``), and what it never logs.

One INFO line per finished call: model, provider, token counts, cost, latency, attempts and
request id. One WARNING line per failed call: error type and request id. Prompt text is
logged only when ``settings.log_prompts`` is on, response text only when
``settings.log_responses`` is on. API keys are never logged (nothing here reads them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from llm.config import Settings
from llm.types import LLMResponse, Message

logger = logging.getLogger("llm")
# A library configures no output: without this, warnings would reach stderr through
# logging's last-resort handler whenever the application has not set up logging.
logger.addHandler(logging.NullHandler())


def _prompt_text(messages: Sequence[Message]) -> str:
    turns = [{"role": m.role.value, "text": m.text()} for m in messages]
    return json.dumps(turns, ensure_ascii=False)


def log_call(
    settings: Settings,
    response: LLMResponse,
    messages: Sequence[Message],
    *,
    call_id: str,
) -> None:
    """Log one finished call, with texts only where the settings allow."""
    if not logger.isEnabledFor(logging.INFO):
        return
    usage = response.usage
    cost = response.cost.total_cost if response.cost is not None else None
    logger.info(
        "llm call model=%s provider=%s input_tokens=%d output_tokens=%d cached_tokens=%d "
        "reasoning_tokens=%d cost_usd=%s latency_s=%.3f attempts=%d finish=%s "
        "request_id=%s call_id=%s",
        response.model,
        response.provider,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        f"{cost:.6f}" if cost is not None else "unknown",
        response.latency_s,
        response.attempts,
        response.finish_reason,
        response.request_id,
        call_id,
    )
    if settings.log_prompts:
        logger.info("llm prompt call_id=%s messages=%s", call_id, _prompt_text(messages))
    if settings.log_responses:
        logger.info(
            "llm response call_id=%s text=%s",
            call_id,
            json.dumps(response.text, ensure_ascii=False),
        )


def log_failure(model: str, provider: str, error: BaseException, *, call_id: str) -> None:
    """Log a failed call: the error type and ids, never its texts."""
    logger.warning(
        "llm call failed model=%s provider=%s error=%s attempts=%s call_id=%s",
        model,
        provider,
        type(error).__name__,
        getattr(error, "attempts", None),
        call_id,
    )
