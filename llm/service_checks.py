"""Input checks of :class:`~llm.service.LLMService` calls, run before anything is sent.

Each check raises :class:`~llm.exceptions.InvalidRequestError` (or
:class:`~llm.exceptions.ContextLengthError` for a prompt clearly over the window) with a
message that says what to fix. Messages never quote prompt text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from pydantic import ValidationError

from llm.config import API_KEY_ENV, Settings, key_hint
from llm.exceptions import ConfigurationError, ContextLengthError, InvalidRequestError
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest, ReasoningEffort
from llm.providers.common import estimate_prompt_tokens, validate_image
from llm.types import ImageContent, Message, MessageRole, ToolResultContent

REASONING_EFFORTS: tuple[str, ...] = get_args(ReasoningEffort)
CACHE_TTLS = ("5m", "1h")
#: A prompt estimated above this share of the context window is rejected before sending.
PREFLIGHT_MARGIN = 1.05
#: Default answer budget when the caller gives none.
DEFAULT_MAX_TOKENS = 4096


class ModelLifecycleWarning(UserWarning):
    """The model is deprecated or retired; the call is still sent."""


def _one_message(item: Any, index: int) -> Message:
    if isinstance(item, Message):
        return item
    if not isinstance(item, dict):
        raise InvalidRequestError(f"messages[{index}] must be a Message or a dict")
    try:
        return Message.model_validate(item)
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"][:1]) for e in error.errors()})
        roles = ", ".join(role.value for role in MessageRole)
        hint = f" (role must be one of {roles})" if "role" in fields else ""
        raise InvalidRequestError(
            f"messages[{index}] is invalid in field(s) {', '.join(fields)}{hint}"
        ) from None


def normalize_messages(messages: Sequence[Message | dict[str, Any]] | None) -> tuple[Message, ...]:
    """Messages as :class:`Message` values, checked for shape and order."""
    if messages is None or isinstance(messages, str | dict) or len(messages) == 0:
        raise InvalidRequestError("messages must be a non-empty list")
    result = tuple(_one_message(item, index) for index, item in enumerate(messages))
    for index, message in enumerate(result):
        _check_message(message, index)
    last = result[-1]
    if last.role not in (MessageRole.USER, MessageRole.TOOL):
        raise InvalidRequestError(
            f"the last message must be from the user or a tool result, not {last.role.value}"
        )
    return result


def _check_message(message: Message, index: int) -> None:
    parts = message.parts()
    if message.role == MessageRole.SYSTEM and any(not _is_text(p) for p in parts):
        raise InvalidRequestError(f"messages[{index}]: a system message may hold only text")
    if message.role == MessageRole.TOOL:
        has_result = any(isinstance(p, ToolResultContent) for p in parts)
        if not has_result and not message.tool_call_id:
            raise InvalidRequestError(
                f"messages[{index}]: a tool message needs tool_call_id or tool_result content"
            )
    if message.tool_calls and message.role != MessageRole.ASSISTANT:
        raise InvalidRequestError(f"messages[{index}]: only assistant messages carry tool_calls")
    for part in parts:
        if isinstance(part, ImageContent):
            validate_image(part)


def _is_text(part: object) -> bool:
    return not isinstance(part, ImageContent | ToolResultContent)


def has_images(messages: Sequence[Message]) -> bool:
    """True if any message holds an image."""
    return any(isinstance(p, ImageContent) for m in messages for p in m.parts())


def check_capabilities(
    model: ModelInfo,
    messages: Sequence[Message],
    *,
    has_tools: bool,
    reasoning_effort: str | None,
) -> None:
    """Raise if the call asks for something ``model`` cannot do."""
    caps = model.capabilities
    if has_images(messages) and not caps.vision:
        raise InvalidRequestError(f"{model.name} does not accept images")
    if has_tools and not caps.tools:
        raise InvalidRequestError(f"{model.name} does not support tools")
    if reasoning_effort is None:
        return
    if reasoning_effort not in REASONING_EFFORTS:
        raise InvalidRequestError(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)} "
            f"(got {reasoning_effort!r})"
        )
    if not caps.reasoning:
        raise InvalidRequestError(f"{model.name} is not a reasoning model")


def resolve_max_tokens(model: ModelInfo, max_tokens: int | None) -> int:
    """The answer budget: the caller's (checked) or ``min(4096, model max)``."""
    if max_tokens is None:
        return min(DEFAULT_MAX_TOKENS, model.max_output_tokens)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequestError("max_tokens must be a positive integer")
    if max_tokens > model.max_output_tokens:
        raise InvalidRequestError(
            f"max_tokens={max_tokens} is above {model.name}'s limit of "
            f"{model.max_output_tokens} output tokens"
        )
    return max_tokens


def check_options(*, temperature: float | None, timeout: float | None, cache_ttl: str) -> None:
    """Range checks of the scalar options."""
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise InvalidRequestError("temperature must be a number between 0 and 2")
    if timeout is not None and not (_is_number(timeout) and timeout > 0):
        raise InvalidRequestError("timeout must be a positive number of seconds")
    if cache_ttl not in CACHE_TTLS:
        raise InvalidRequestError(f"cache_ttl must be one of {', '.join(CACHE_TTLS)}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def preflight_context(request: ProviderRequest) -> int:
    """The prompt estimate; raises ContextLengthError if clearly over the window."""
    model = request.model
    estimate = estimate_prompt_tokens(request)
    if estimate > PREFLIGHT_MARGIN * model.context_window:
        raise ContextLengthError(
            f"the prompt is about {estimate} tokens; the context window is "
            f"{model.context_window} tokens",
            tokens_used=estimate,
            max_tokens=model.context_window,
            provider=model.provider,
            model=model.name,
        )
    return estimate


def check_credentials(settings: Settings, provider: str) -> None:
    """Raise a ConfigurationError that says how to fix a missing key."""
    if settings.api_key(provider) or settings.base_url(provider):
        return
    all_vars = ", ".join(name for names in API_KEY_ENV.values() for name in names)
    raise ConfigurationError(
        f"no API key for {provider}: set {key_hint(provider)} (keys are read from "
        f"{all_vars} or a .env file), or set LLM_OFFLINE=1 to use the built-in emulator",
        provider=provider,
    )
