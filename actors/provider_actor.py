"""The provider actor: one :class:`~runtime.engine.ProviderEngine` per provider account.

Every driver of a cluster sends its calls for one account to the same actor, so that one
rate limiter, one circuit breaker and one prompt-cache gate see all of that account's
traffic. Values crossing the actor boundary are the small pydantic models
(:class:`ProviderRequest`, :class:`CallContext`, :class:`Executed`, ``EngineStats``) and
text chunks; never SDK objects.

Where the API key comes from (the whole design is in :mod:`runtime.keys`). The driver that
creates the actor passes its key for the account sealed (:class:`~runtime.keys.SealedKey`) as
a constructor argument: Ray keeps it for restarts and shows it nowhere, and no repr, log or
pickle holds its text. The actor's name carries the key's fingerprint, so drivers with other
keys never reach it. An actor created without a key (its name has no fingerprint) reads the
key from its own process environment: the variable ``api_key_env`` names (an
``[[accounts]]`` entry of the limits file), else the provider's usual variables
(:data:`llm.config.API_KEY_ENV`), i.e. the cluster's environment. With neither, each call
fails with a :class:`~llm.exceptions.ConfigurationError` saying where the key was looked for.

This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llm.config import PROVIDERS, Settings
from llm.executor import CallContext, Executed
from llm.providers.base import ProviderRequest
from llm.retry import RetryConfig
from runtime.journal_log import JOURNAL_DIR
from runtime.journal_sink import JournalLedgerSink
from runtime.keys import SealedKey, actor_key, key_env_names, require_key
from runtime.limiter import AccountLimits

#: The key fields of :class:`Settings`; never sent to, nor shown by, an actor.
_KEY_FIELDS = frozenset(f"{p}_api_key" for p in PROVIDERS)


def actor_settings(
    provider: str,
    settings_fields: dict[str, Any],
    api_key_env: str | None,
    environ: dict[str, str] | None = None,
    *,
    key: SealedKey | None = None,
    account: str = "default",
    node: str | None = None,
) -> Settings:
    """Settings for one provider actor: the driver's non-secret fields plus the account's key.

    The key is the driver's sealed ``key``, else read from ``environ`` (default: this process's
    environment); with neither, :class:`~llm.exceptions.ConfigurationError` says where it was
    looked for. Any key field in ``settings_fields`` is ignored.
    """
    fields = {k: v for k, v in settings_fields.items() if k not in _KEY_FIELDS}
    plain, _ = require_key(provider, account, key, api_key_env, environ, node)
    fields[f"{provider}_api_key"] = plain
    return Settings(**fields)


class ProviderActor:
    """Hosts the engine of one provider account; the engine is built on first use."""

    def __init__(
        self,
        provider: str,
        account: str,
        settings_fields: dict[str, Any],
        api_key_env: str | None = None,
        limits: dict[str, Any] | None = None,
        retry: dict[str, Any] | None = None,
        ledger_name: str | None = None,
        namespace: str = "llm",
        journal_commit_s: float = 0.0,
        key: SealedKey | None = None,
    ) -> None:
        self.provider = provider
        self.account = account
        self._settings_fields = dict(settings_fields)
        self._api_key_env = api_key_env
        self._key = key
        self._limits = AccountLimits(**limits) if limits else None
        self._retry = RetryConfig(**retry) if retry else None
        self._ledger: JournalLedgerSink | None = None
        if ledger_name:
            ledger_dir = settings_fields.get("ledger_dir") or Settings().ledger_dir
            journal = Path(ledger_dir) / JOURNAL_DIR
            self._ledger = JournalLedgerSink(
                journal, ledger_name, namespace, commit_interval_s=journal_commit_s
            )
        self._engine: Any = None

    def _get_engine(self) -> Any:
        if self._engine is None:
            from runtime.engine import ProviderEngine

            settings = actor_settings(
                self.provider,
                self._settings_fields,
                self._api_key_env,
                key=self._key,
                account=self.account,
                node=_node_id(),
            )
            self._engine = ProviderEngine(
                self.provider,
                settings,
                account=self.account,
                limits=self._limits,
                retry_config=self._retry,
                ledger=self._ledger,
            )
        return self._engine

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Run one call through the engine (limits, cache gate, retries, ledger)."""
        return await self._get_engine().execute(request, ctx)

    async def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """A Ray streaming generator: text chunks, then one :class:`Executed`.

        Call it as ``actor.execute_stream.options(num_returns="streaming").remote(...)``.
        """
        async for item in self._get_engine().execute_stream(request, ctx):
            yield item

    async def stats(self) -> Any:
        """The engine's ``EngineStats`` (headroom, in-flight calls, breaker state, counters)."""
        return self._get_engine().stats()

    async def describe(self) -> dict[str, Any]:
        """Provider, account, process id and the non-secret configuration (never the key)."""
        import ray

        public = {k: v for k, v in self._settings_fields.items() if k not in _KEY_FIELDS}
        names = key_env_names(self.provider, self._api_key_env)
        _, source = actor_key(self._key, names)
        return {
            "provider": self.provider,
            "account": self.account,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "settings": public,
            "key_source": source,  # "the driver", "the cluster's environment (VAR)" or None
        }

    async def journal_pending(self) -> int:
        """Ledger rows of finished calls not yet on disk (those calls are not answered yet)."""
        return self._ledger.pending_count if self._ledger is not None else 0

    async def aclose(self) -> None:
        """Close the engine's connection pool and this actor's journal segment."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.aclose()
        if self._ledger is not None:
            await self._ledger.aclose()


def _node_id() -> str | None:
    """This process's Ray node id (for error texts), or None outside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # only used to make an error text more precise
        return None
