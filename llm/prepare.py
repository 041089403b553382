"""How a request is prepared: the model picked, defaults applied, every check made, once.

:func:`pick_model` and :func:`prepare_request` are the one preparation of a call. The
service (:meth:`llm.service.LLMService.generate`), the batch job (its rows, its budget
guard and its cache-first scheduler, :mod:`jobs.batch_input`) and the dry run
(:mod:`jobs.batch_dryrun`) all build their :class:`~llm.providers.base.ProviderRequest`
here, so a row is accepted or rejected with the same typed error everywhere. What only the
service decides on top (retired models, lifecycle warnings, missing keys) stays in the
service, because it depends on its settings and clock rather than on the request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from llm.exceptions import InvalidRequestError
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest
from llm.recommend import get_best_model_for_task
from llm.registry import resolve_model
from llm.service_checks import (
    check_capabilities,
    check_options,
    normalize_messages,
    preflight_context,
    resolve_max_tokens,
)
from llm.structured import check_schema
from llm.tool_specs import check_tool_choice, normalize_tools
from llm.types import Message


def pick_model(
    model: str | None,
    task: str | None,
    budget: str | None,
    *,
    default_model: str,
    today: dt.date | None = None,
) -> ModelInfo:
    """The model of a call: ``model``, else the recommendation for ``task``/``budget``,
    else ``default_model``. ``budget`` without ``task`` is an error."""
    if model is None and task is not None:
        try:
            model = get_best_model_for_task(task, budget or "medium", today=today)
        except ValueError as error:
            raise InvalidRequestError(str(error)) from None
    elif budget is not None and task is None:
        raise InvalidRequestError("budget is used only together with task")
    if model is not None and not isinstance(model, str):
        raise InvalidRequestError("model must be a model name")
    return resolve_model(model or default_model)


def prepare_request(
    info: ModelInfo,
    messages: Sequence[Message | dict[str, Any]] | None,
    *,
    enable_caching: bool,
    max_tokens: int | None = None,
    temperature: float | None = None,
    structured_output_schema: dict[str, Any] | None = None,
    tools: Any = None,
    tool_choice: str | dict[str, Any] | None = None,
    reasoning_effort: str | None = None,
    timeout: float | None = None,
    cache_ttl: str = "5m",
) -> ProviderRequest:
    """The checked :class:`ProviderRequest` of a call on ``info``; raises the typed error
    (:class:`InvalidRequestError`, ``ContextLengthError``...) of the first problem."""
    checked = normalize_messages(messages)
    specs = normalize_tools(tools)
    check_capabilities(info, checked, has_tools=bool(specs), reasoning_effort=reasoning_effort)
    check_options(temperature=temperature, timeout=timeout, cache_ttl=cache_ttl)
    schema = structured_output_schema
    try:
        request = ProviderRequest(
            model=info,
            messages=checked,
            max_tokens=resolve_max_tokens(info, max_tokens),
            temperature=temperature,
            enable_caching=enable_caching,
            cache_ttl=cache_ttl,
            structured_output_schema=check_schema(schema) if schema is not None else None,
            tools=specs,
            tool_choice=check_tool_choice(tool_choice, specs),
            reasoning_effort=reasoning_effort,
            timeout=timeout,
        )
    except ValidationError as error:
        fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
        raise InvalidRequestError(f"invalid option(s): {', '.join(fields)}") from None
    preflight_context(request)
    return request
