"""Each provider's own wording for the errors the engine raises.

The engine decides *what* went wrong (an :class:`~llm.emulator.protocol.EmuError` kind and
its numbers); these helpers phrase the message the way that provider does, so clients and
their error classifiers see familiar text. No message ever contains an API key.
"""

from __future__ import annotations

import math

from llm.emulator.protocol import EmuError, EmuRequest

_UNITS = {
    "requests": ("requests", "RPM"),
    "input_tokens": ("input tokens", "ITPM"),
    "output_tokens": ("output tokens", "OTPM"),
}


def authentication(provider: str, missing: bool) -> EmuError:
    if provider == "anthropic":
        text = "x-api-key header is required" if missing else "invalid x-api-key"
    elif provider == "openai":
        text = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            if missing
            else "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
    else:
        text = "API key not valid. Please pass a valid API key."
    return EmuError("authentication", text)


def model_not_found(provider: str, name: str) -> EmuError:
    if provider == "anthropic":
        text = f"model: {name}"
    elif provider == "openai":
        text = f"The model `{name}` does not exist or you do not have access to it."
    else:
        bare = name.removeprefix("models/")
        text = (
            f"models/{bare} is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and "
            "their supported methods."
        )
    return EmuError("not_found", text)


def context_length(req: EmuRequest, used: int, window: int) -> EmuError:
    if req.provider == "anthropic":
        text = f"prompt is too long: {used} tokens > {window} maximum"
    elif req.api == "responses":
        text = (
            "Your input exceeds the context window of this model. "
            "Please adjust your input and try again."
        )
    elif req.provider == "openai":
        text = (
            f"This model's maximum context length is {window} tokens. However, your "
            f"messages resulted in {used} tokens. Please reduce the length of the messages."
        )
    else:
        text = (
            f"The input token count ({used}) exceeds the maximum number of tokens "
            f"allowed ({window})."
        )
    return EmuError("context_length", text, tokens_used=used, max_tokens=window)


def max_tokens_too_large(req: EmuRequest, asked: int, limit: int, version: str) -> EmuError:
    if req.provider == "anthropic":
        text = (
            f"max_tokens: {asked} > {limit}, which is the maximum allowed number of "
            f"output tokens for {version}"
        )
    elif req.provider == "openai":
        text = (
            f"max_tokens is too large: {asked}. This model supports at most {limit} "
            f"completion tokens, whereas you provided {asked}."
        )
    else:
        text = (
            f"Unable to submit request because it has a maxOutputTokens value of {asked} "
            f"but the supported range is from 1 (inclusive) to {limit + 1} (exclusive)."
        )
    return EmuError("invalid_request", text)


def rate_limited(
    provider: str, model: str, limit_name: str, limit: int | None, retry_after_s: float
) -> EmuError:
    unit, short = _UNITS.get(limit_name, ("requests", "RPM"))
    wait = max(1, math.ceil(retry_after_s))
    if provider == "anthropic":
        text = (
            f"This request would exceed the rate limit for your organization of {limit} "
            f"{unit} per minute. Please try again in {wait}s."
        )
    elif provider == "openai":
        text = (
            f"Rate limit reached for {model} on {unit} per min ({short}): Limit {limit}. "
            f"Please try again in {wait}s."
        )
    else:
        text = (
            "You exceeded your current quota, please check your plan and billing details. "
            f"Quota exceeded for metric: {unit} per minute, limit: {limit}, model: {model}. "
            f"Please retry in {wait}s."
        )
    return EmuError("rate_limit", text, retry_after_s=retry_after_s)


def injected(provider: str, fault: str) -> EmuError:
    """The error for a ``fault=`` directive or a random fault (429, 500, 503, 529)."""
    if fault == "429":
        return EmuError("rate_limit", _RATE_TEXT[provider], retry_after_s=1.0)
    if fault == "500":
        return EmuError("server_error", _SERVER_TEXT[provider])
    return EmuError("overloaded", _OVERLOADED_TEXT[provider], retry_after_s=1.0)


_RATE_TEXT = {
    "anthropic": "Number of request tokens has exceeded your per-minute rate limit.",
    "openai": "Rate limit reached for requests. Please try again in 1s.",
    "google": "Resource has been exhausted (e.g. check quota). Please retry in 1s.",
}
_SERVER_TEXT = {
    "anthropic": "Internal server error",
    "openai": "The server had an error while processing your request. Sorry about that!",
    "google": "An internal error has occurred. Please retry or report the problem.",
}
_OVERLOADED_TEXT = {
    "anthropic": "Overloaded",
    "openai": "The server is overloaded. Please try again later.",
    "google": "The model is overloaded. Please try again later.",
}
