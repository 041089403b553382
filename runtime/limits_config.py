"""Per-account rate limits of each provider, from a TOML file and environment variables.

The file is named by ``LLM_LIMITS_FILE`` (or ``Settings.limits_file``)::

    # Limits of the default account of each provider (its key is the usual
    # ANTHROPIC_API_KEY / OPENAI_API_KEY / GOOGLE_API_KEY).
    [anthropic]
    rpm = 4000            # requests per minute
    itpm = 2000000        # input tokens per minute
    otpm = 400000         # output tokens per minute
    cache_reads_count = false   # Anthropic: cache reads do not count against ITPM

    [openai]
    rpm = 5000
    tpm = 800000          # OpenAI's single (input + output) token limit

    [google]
    rpm = 1000
    itpm = 1000000

    # Several keys of one provider: one entry each. The key itself is read from the
    # named environment variable; it is never written in this file.
    [[accounts]]
    provider = "anthropic"
    name = "team-a"
    api_key_env = "ANTHROPIC_API_KEY_TEAM_A"
    rpm = 4000            # any limit left out is taken from the [anthropic] table

Every limit is optional; a missing limit means "no client-side limit" (the limiter still
learns limits from the provider's rate-limit headers). Environment variables override the
provider tables: ``LLM_LIMITS_<PROVIDER>_<LIMIT>``, e.g. ``LLM_LIMITS_ANTHROPIC_RPM``,
``LLM_LIMITS_OPENAI_TPM``, ``LLM_LIMITS_GOOGLE_ITPM`` (limits ``RPM``, ``ITPM``, ``OTPM``,
``TPM``; ``LLM_LIMITS_ANTHROPIC_CACHE_READS_COUNT`` takes a boolean).

Accounts per provider: if the file has ``[[accounts]]`` entries for a provider, exactly those
accounts are used; otherwise the provider has one account named ``"default"`` whose key is
the one in :class:`llm.config.Settings` (``api_key_env`` is None).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llm.config import PROVIDERS, Settings, parse_bool
from llm.exceptions import ConfigurationError
from runtime.limiter import AccountLimits

_LIMIT_FIELDS = ("rpm", "itpm", "otpm", "tpm", "cache_reads_count")
_ACCOUNT_FIELDS = ("provider", "name", "api_key_env")
_DEFAULT_CACHE_READS_COUNT = {"anthropic": False}


class AccountSpec(BaseModel):
    """One provider account: its name, where its key is, and its limits (never the key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    name: str = "default"
    #: Environment variable holding the key; None means the provider's key in Settings.
    api_key_env: str | None = None
    limits: AccountLimits = AccountLimits()

    def api_key(self, settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
        """The plain key of this account (only adapters should call this)."""
        if self.api_key_env is None:
            return settings.api_key(self.provider)
        value = (os.environ if environ is None else environ).get(self.api_key_env)
        return value or None


def load_limits(
    settings: Settings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> dict[str, list[AccountSpec]]:
    """Accounts and limits of every provider (see the module docstring for the format).

    The file is ``path``, else ``settings.limits_file``, else ``LLM_LIMITS_FILE`` in
    ``environ`` (default ``os.environ``); with none, limits come from variables alone.
    """
    env = os.environ if environ is None else environ
    file = path or (settings.limits_file if settings else None) or env.get("LLM_LIMITS_FILE")
    data = _read_file(Path(file)) if file else {}
    where = str(file) if file else "environment"
    tables = {p: _provider_table(data.get(p, {}), p, where) for p in PROVIDERS}
    for provider in PROVIDERS:
        tables[provider].update(_env_limits(env, provider))
    unknown = set(data) - set(PROVIDERS) - {"accounts"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown section(s) {sorted(unknown)}")
    accounts = _accounts(data.get("accounts", []), tables, where)
    return {p: accounts.get(p) or [_account(p, {}, tables[p], where)] for p in PROVIDERS}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"limits file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"limits file {path} is not valid TOML: {exc}") from exc


def _provider_table(table: Any, provider: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: [{provider}] must be a table")
    unknown = set(table) - set(_LIMIT_FIELDS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) in [{provider}]: {sorted(unknown)}")
    return dict(table)


def _env_limits(env: Mapping[str, str], provider: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in _LIMIT_FIELDS:
        variable = f"LLM_LIMITS_{provider.upper()}_{name.upper()}"
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            found[name] = parse_bool(raw) if name == "cache_reads_count" else int(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{variable} is not valid: {raw!r}") from exc
    return found


def _accounts(
    entries: Any, tables: dict[str, dict[str, Any]], where: str
) -> dict[str, list[AccountSpec]]:
    if not isinstance(entries, list):
        raise ConfigurationError(f"{where}: 'accounts' must be an array of tables ([[accounts]])")
    result: dict[str, list[AccountSpec]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("provider") not in PROVIDERS:
            raise ConfigurationError(f"{where}: each [[accounts]] needs provider in {PROVIDERS}")
        unknown = set(entry) - set(_LIMIT_FIELDS) - set(_ACCOUNT_FIELDS)
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s) in [[accounts]]: {sorted(unknown)}")
        provider = entry["provider"]
        spec = _account(provider, entry, tables[provider], where)
        if any(other.name == spec.name for other in result.get(provider, [])):
            raise ConfigurationError(f"{where}: duplicate {provider} account name {spec.name!r}")
        result.setdefault(provider, []).append(spec)
    return result


def _account(
    provider: str, entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str
) -> AccountSpec:
    limits: dict[str, Any] = {"cache_reads_count": _DEFAULT_CACHE_READS_COUNT.get(provider, True)}
    limits.update(defaults)
    limits.update({k: v for k, v in entry.items() if k in _LIMIT_FIELDS})
    try:
        return AccountSpec(
            provider=provider,
            name=entry.get("name", "default"),
            api_key_env=entry.get("api_key_env"),
            limits=AccountLimits(**limits),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"{where}: invalid {provider} limits: {problems}") from exc
