"""Settings from the environment and an optional ``.env`` file.

Environment variables win over the ``.env`` file. API keys are held as
:class:`pydantic.SecretStr`: they never appear in a repr, a log line or an error text. A key
variable may instead name a file holding the key, ``<VARIABLE>_FILE`` (the convention of
Docker and Kubernetes secrets): a job can then say where its key is (e.g. in a ``ray job
submit`` runtime environment, which the Ray dashboard shows) without saying what it is.

| variable | meaning | default |
|---|---|---|
| ``ANTHROPIC_API_KEY`` | Anthropic key | none |
| ``OPENAI_API_KEY`` | OpenAI key | none |
| ``GOOGLE_API_KEY`` / ``GEMINI_API_KEY`` | Gemini key | none |
| ``<KEY VARIABLE>_FILE`` | a file holding that key (e.g. ``ANTHROPIC_API_KEY_FILE``) | none |
| ``ANTHROPIC_BASE_URL`` | Anthropic base URL (no ``/v1``) | the real API |
| ``OPENAI_BASE_URL`` | OpenAI base URL, ending in ``/v1`` | the real API |
| ``GOOGLE_GEMINI_BASE_URL`` | Gemini base URL (no version) | the real API |
| ``DEFAULT_LLM_MODEL`` | model used when a call names none | ``claude-haiku-5.5`` |
| ``LLM_ENABLE_CACHING`` | default for ``enable_caching`` | ``false`` |
| ``LLM_LOG_PROMPTS`` / ``LLM_LOG_RESPONSES`` | log prompt / response text | ``false`` |
| ``LLM_RUNTIME`` | ``local`` (in process) or ``ray`` (through the actors) | ``local`` |
| ``LLM_RAY_ADDRESS`` | Ray cluster to join (``auto``, ``ray://…``); empty starts Ray embedded | empty |
| ``LLM_LEDGER_DIR`` | where the ledger writes Parquet | ``./llm-ledger`` |
| ``LLM_MODELS_FILE`` | a TOML file adding or overriding registry models (read by :mod:`llm.registry`) | none |
| ``LLM_LIMITS_FILE`` | a TOML file of per-account rate limits | none |
| ``LLM_MAX_CONNECTIONS`` | connection-pool size per provider client | ``100`` |
| ``LLM_OFFLINE`` | start the built-in emulator and point every provider at it | ``false`` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from llm.exceptions import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

PROVIDERS = ("anthropic", "openai", "google")

#: The variables holding each provider's key, first match wins (also read from ``.env``).
API_KEY_ENV: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
}


def key_hint(provider: str) -> str:
    """The variables that hold ``provider``'s key, for error messages ("A or B")."""
    return " or ".join(API_KEY_ENV[provider])


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Read a boolean setting; raise ``ValueError`` on anything unrecognised."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"not a boolean setting: {value!r}")


def key_from(env: Mapping[str, str], name: str) -> str | None:
    """The key in variable ``name`` of ``env``, else in the file ``<name>_FILE`` names."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"{name}_FILE names {path}, which cannot be read: {problem}"
        ) from None
    if not key:
        raise ConfigurationError(f"{name}_FILE names {path}, which is empty")
    return key


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    file = Path(path)
    if not file.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


class Settings(BaseModel):
    """Resolved configuration. Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True)

    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    google_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None
    google_base_url: str | None = None
    default_model: str = "claude-haiku-5.5"
    enable_caching: bool = False
    log_prompts: bool = False
    log_responses: bool = False
    runtime: str = "local"
    ray_address: str | None = None
    ledger_dir: str = "./llm-ledger"
    limits_file: str | None = None
    max_connections: int = 2048
    offline: bool = False
    #: Send the calls admitted before an account's limits are known as streams, whose
    #: headers (and the limits in them) come before the first token (``runtime.engine``).
    stream_slow_start: bool = True

    def api_key(self, provider: str) -> str | None:
        """The plain key for ``provider`` (only adapters call this, to build a client)."""
        secret = {
            "anthropic": self.anthropic_api_key,
            "openai": self.openai_api_key,
            "google": self.google_api_key,
        }[provider]
        return secret.get_secret_value() if secret is not None else None

    def base_url(self, provider: str) -> str | None:
        """The configured base URL for ``provider``, or None for the real API."""
        return {
            "anthropic": self.anthropic_base_url,
            "openai": self.openai_base_url,
            "google": self.google_base_url,
        }[provider]

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (keys given as plain strings are wrapped)."""
        for name in ("anthropic_api_key", "openai_api_key", "google_api_key"):
            value = changes.get(name)
            if isinstance(value, str):
                changes[name] = SecretStr(value)
        return self.model_copy(update=changes)


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | os.PathLike[str] | None = ".env"
) -> Settings:
    """Settings from ``environ`` (default ``os.environ``) over the ``.env`` file."""
    merged: dict[str, str] = dict(read_dotenv(dotenv_path)) if dotenv_path else {}
    merged.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = merged.get(name)
        return value if value not in (None, "") else None

    runtime = (get("LLM_RUNTIME") or "local").lower()
    if runtime not in ("local", "ray"):
        raise ValueError(f"LLM_RUNTIME must be 'local' or 'ray', not {runtime!r}")
    present = {k: v for k, v in merged.items() if v}
    keys = {
        provider: next(filter(None, (key_from(present, name) for name in names)), None)
        for provider, names in API_KEY_ENV.items()
    }
    return Settings(
        anthropic_api_key=_secret(keys["anthropic"]),
        openai_api_key=_secret(keys["openai"]),
        google_api_key=_secret(keys["google"]),
        anthropic_base_url=get("ANTHROPIC_BASE_URL"),
        openai_base_url=get("OPENAI_BASE_URL"),
        google_base_url=get("GOOGLE_GEMINI_BASE_URL"),
        default_model=get("DEFAULT_LLM_MODEL") or "claude-haiku-5.5",
        enable_caching=parse_bool(get("LLM_ENABLE_CACHING")),
        log_prompts=parse_bool(get("LLM_LOG_PROMPTS")),
        log_responses=parse_bool(get("LLM_LOG_RESPONSES")),
        runtime=runtime,
        ray_address=get("LLM_RAY_ADDRESS"),
        ledger_dir=get("LLM_LEDGER_DIR") or "./llm-ledger",
        limits_file=get("LLM_LIMITS_FILE"),
        max_connections=int(get("LLM_MAX_CONNECTIONS") or 2048),
        offline=parse_bool(get("LLM_OFFLINE")),
        stream_slow_start=parse_bool(get("LLM_STREAM_SLOW_START"), default=True),
    )
