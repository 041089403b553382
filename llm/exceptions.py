"""The typed error tree every provider error is mapped into, once, at the adapter boundary.

::

    LLMError
    ├── ConfigurationError          missing key, bad setting
    ├── AuthenticationError         401/403, bad or missing key
    ├── RateLimitError              429 (retry_after_s; retryable unless a spend/quota cap)
    ├── ProviderOverloadedError     529 / 503 overloaded
    ├── ContextLengthError          prompt longer than the model's window (tokens_used, max_tokens)
    ├── InvalidRequestError         any other 400/422
    │   ├── StructuredOutputError   the reply did not validate against the schema (raw_text)
    │   └── RequestTooLargeError    a 429 no wait can cure: one request above a per-minute limit
    ├── ModelNotFoundError          unknown model (suggestions)
    │   └── ModelRetiredError       the model was retired (replacement, retired_on); not sent
    ├── ProviderError               any other provider failure (status, request_id)
    ├── LLMTimeoutError             the request timed out
    ├── ProviderConnectionError     connection refused/reset, stream cut mid-way
    ├── CircuitOpenError            the runtime stopped sending to a failing provider
    └── BudgetExceededError         a spend cap would be passed

Rules: every exception pickles and round-trips (Ray re-raises it in another process), so
all state is primitive and passed through ``__reduce__``; none holds an API key or an SDK
exception object, and none puts prompt or response text into its message.
"""

from __future__ import annotations

from typing import Any, ClassVar


def _rebuild(cls: type[LLMError], message: str, fields: dict[str, Any]) -> LLMError:
    return cls(message, **fields)


class LLMError(Exception):
    """Base of every error this package raises."""

    retryable: ClassVar[bool] = False
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str = "",
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.request_id = request_id
        #: How many attempts were made before this error was raised (set by the retry policy).
        self.attempts = attempts

    def _all_fields(self) -> dict[str, Any]:
        names = ("provider", "model", "status", "request_id", "attempts", *self._fields)
        return {name: getattr(self, name) for name in names}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._all_fields()))

    def __str__(self) -> str:
        where = "/".join(part for part in (self.provider, self.model) if part)
        return f"[{where}] {self.message}" if where else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    @property
    def error_type(self) -> str:
        """The class name, as recorded in ledgers and batch outputs."""
        return type(self).__name__


class ConfigurationError(LLMError):
    """A setting is missing or invalid (for example no API key for the provider)."""


class AuthenticationError(LLMError):
    """The provider rejected the credentials (401/403)."""


class RateLimitError(LLMError):
    """The provider answered 429. ``retry_after_s`` is its hint, if it gave one.

    ``quota_exhausted`` marks a spend cap or daily quota: waiting a minute will not help,
    so it is not retried.
    """

    _fields = ("retry_after_s", "quota_exhausted")

    def __init__(
        self,
        message: str = "",
        *,
        retry_after_s: float | None = None,
        quota_exhausted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s
        self.quota_exhausted = quota_exhausted

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return not self.quota_exhausted


class ProviderOverloadedError(LLMError):
    """The provider is overloaded (Anthropic 529, 503 UNAVAILABLE)."""

    retryable = True
    _fields = ("retry_after_s",)

    def __init__(self, message: str = "", *, retry_after_s: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class ContextLengthError(LLMError):
    """The prompt does not fit the model's context window."""

    _fields = ("tokens_used", "max_tokens")

    def __init__(
        self,
        message: str = "",
        *,
        tokens_used: int | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.tokens_used = tokens_used
        self.max_tokens = max_tokens


class InvalidRequestError(LLMError):
    """The request is malformed or asks for something the model cannot do."""


class StructuredOutputError(InvalidRequestError):
    """The reply did not parse or validate against the requested JSON schema.

    ``raw_text`` holds the reply for inspection; it is never part of ``str(error)``.
    """

    _fields = ("raw_text", "validation_error")

    def __init__(
        self,
        message: str = "",
        *,
        raw_text: str = "",
        validation_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.validation_error = validation_error


class RequestTooLargeError(InvalidRequestError):
    """One request needs more tokens than the account may use in a whole minute (OpenAI's
    429 "Request too large … on tokens per min"). Waiting cannot help, so it is not retried;
    and since the account's budget was not used up, it is not a rate-limit penalty either.
    ``limit_tokens`` and ``requested_tokens`` are the provider's numbers, when it gave them.
    """

    _fields = ("limit_tokens", "requested_tokens")

    def __init__(
        self,
        message: str = "",
        *,
        limit_tokens: int | None = None,
        requested_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.limit_tokens = limit_tokens
        self.requested_tokens = requested_tokens


class ModelNotFoundError(LLMError):
    """The model name is unknown to the registry or to the provider."""

    _fields = ("suggestions",)

    def __init__(self, message: str = "", *, suggestions: list[str] | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.suggestions = list(suggestions or [])


class ModelRetiredError(ModelNotFoundError):
    """The model was retired: the provider answers 404, so the call is not sent.

    ``replacement`` names the model to use instead (also the first of ``suggestions``);
    ``retired_on`` is the ISO date of the retirement when known.
    """

    _fields = ("suggestions", "replacement", "retired_on")

    def __init__(
        self,
        message: str = "",
        *,
        replacement: str | None = None,
        retired_on: str | None = None,
        **kwargs: Any,
    ):
        if replacement and not kwargs.get("suggestions"):
            kwargs["suggestions"] = [replacement]
        super().__init__(message, **kwargs)
        self.replacement = replacement
        self.retired_on = retired_on


class ProviderError(LLMError):
    """Any other provider failure (5xx, unexpected answers)."""

    retryable = True


class LLMTimeoutError(LLMError):
    """The request did not finish within its timeout."""

    retryable = True


class ProviderConnectionError(LLMError):
    """The connection failed, was reset, or a stream was cut before it finished."""

    retryable = True


class CircuitOpenError(LLMError):
    """The runtime's circuit breaker is open for this provider after repeated overloads."""

    retryable = True
    _fields = ("retry_after_s",)

    def __init__(self, message: str = "", *, retry_after_s: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class BudgetExceededError(LLMError):
    """Admitting the request would pass the spend cap."""

    _fields = ("budget_usd", "spent_usd")

    def __init__(
        self,
        message: str = "",
        *,
        budget_usd: float | None = None,
        spent_usd: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd


ALL_ERRORS: tuple[type[LLMError], ...] = (
    LLMError,
    ConfigurationError,
    AuthenticationError,
    RateLimitError,
    ProviderOverloadedError,
    ContextLengthError,
    InvalidRequestError,
    StructuredOutputError,
    ModelNotFoundError,
    ProviderError,
    LLMTimeoutError,
    ProviderConnectionError,
    CircuitOpenError,
    BudgetExceededError,
)
