"""The provider actor: one :class:`~runtime.engine.ProviderEngine` per provider account.

Every driver of a cluster sends its calls for one account to the same actor, so that one
rate limiter, one circuit breaker and one prompt-cache gate see all of that account's
traffic. Values crossing the actor boundary are the small pydantic models
(:class:`ProviderRequest`, :class:`CallContext`, :class:`Executed`, ``EngineStats``) and
text chunks; never SDK objects.

Where the API key comes from. The key is never an argument of the actor (arguments are
stored in Ray's GCS and shown on the dashboard). The actor reads it from its own process
environment: the variable ``api_key_env`` names (an ``[[accounts]]`` entry of the limits
file), else the provider's usual variable (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``,
``GOOGLE_API_KEY`` / ``GEMINI_API_KEY``). Embedded Ray workers inherit the driver's
environment; on a cluster the keys travel in the job's runtime environment (see
:mod:`runtime.runtime`). The one exception is the emulator: its key is not a secret, so
when the driver points a provider at a local emulator, :mod:`runtime.runtime` puts that key
in ``settings_fields`` (``<provider>_api_key``), and it then wins over the environment.

This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llm.config import Settings
from llm.executor import CallContext, Executed
from llm.providers.base import ProviderRequest
from llm.retry import RetryConfig
from runtime.journal_log import JOURNAL_DIR, GroupCommit, JournalEntry, JournalLog
from runtime.ledger_store import LedgerRecord
from runtime.limiter import AccountLimits

#: The provider's usual key variables, first match wins.
DEFAULT_KEY_ENV: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
}


def actor_settings(
    provider: str,
    settings_fields: dict[str, Any],
    api_key_env: str | None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Settings for one provider actor: the driver's non-secret fields plus the key.

    A ``<provider>_api_key`` in ``settings_fields`` (the emulator's) wins; otherwise the key is
    read from ``environ`` (default: this process's environment).
    """
    env = os.environ if environ is None else environ
    fields = dict(settings_fields)
    key_field = f"{provider}_api_key"
    if not fields.get(key_field):
        names = (api_key_env,) if api_key_env else DEFAULT_KEY_ENV.get(provider, ())
        key = next((env[name] for name in names if env.get(name)), None)
        fields[key_field] = key
    return Settings(**fields)


class JournalLedgerSink:
    """The engine's :class:`~runtime.ledger_sink.LedgerSink` in a provider actor.

    :meth:`record` appends the row (and the result to journal) to this actor's own segment
    of the ledger's journal and returns once it is fsynced; concurrent calls share one write.
    The LedgerActor reads the segment and writes the rows to Parquet. :meth:`lookup` asks the
    LedgerActor, which reads the journal first, so a row acknowledged here is always found.
    """

    def __init__(
        self, journal_dir: str | os.PathLike[str], name: str, namespace: str, **commit: Any
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._commit = GroupCommit(JournalLog(journal_dir), **commit)
        self._handle: Any = None

    def _actor(self) -> Any:
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    async def record(self, record: LedgerRecord, result: Executed | None = None) -> None:
        """Journal one ledger row (and the result); return once it is on disk."""
        self._commit.add(JournalEntry.of_call(record, result))
        await self._commit.commit([record.request_id])

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """Journaled results of ``request_ids``."""
        return await self._actor().lookup.remote(list(request_ids))

    @property
    def pending_count(self) -> int:
        """Rows not yet on disk (their calls are not answered yet)."""
        return self._commit.pending_count

    async def aclose(self) -> None:
        """Write what is queued and close the segment (a later row opens a new one)."""
        await self._commit.commit()
        self._commit.log.close()


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
    ) -> None:
        self.provider = provider
        self.account = account
        self._settings_fields = dict(settings_fields)
        self._api_key_env = api_key_env
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

            settings = actor_settings(self.provider, self._settings_fields, self._api_key_env)
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

        public = {k: v for k, v in self._settings_fields.items() if not k.endswith("_api_key")}
        return {
            "provider": self.provider,
            "account": self.account,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "settings": public,
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
