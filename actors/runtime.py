"""Start or join Ray and find (or create) the shared actors: ledger, router, provider actors.

::

    from actors.runtime import Runtime

    runtime = Runtime().start()             # embedded Ray on this machine
    runtime = Runtime("auto").start()       # join the cluster this machine belongs to
    executor = runtime.executor()           # a RayExecutor for LLMService(executor=...)
    ...
    runtime.shutdown()                      # commits the ledger, compacts its journal;
                                            # actors keep running

Every driver that starts a :class:`Runtime` on the same cluster (same ``namespace``) gets
the same actors: one per provider account (from :func:`runtime.limits_config.load_limits`),
one router and one ledger. The first driver creates them with its settings and limits; later
drivers reuse them as they are (kill them, ``shutdown(kill_actors=True)``, to reconfigure).

API keys (the design is in :mod:`runtime.keys`): this driver resolves each account's key
from its own settings (environment over ``.env``), an account's ``api_key_env`` variable, or
its Ray job's ``runtime_env``, and hands it to the account's provider actor sealed, as a
constructor argument (shown on no dashboard, log or repr; :func:`public_settings` are the
only other fields sent, and hold no key). The actor's name carries a fingerprint of the key,
so drivers with the same key share an actor and its rate limiter and drivers with different
keys never do; the router is per set of provider actors, so a driver's routes list only its
own keys' actors. A driver without a key for an account uses the account's actor without a
fingerprint, which reads the key from the cluster's environment. This works the same
embedded, joined with ``--address``, or started by ``ray job submit`` (whose
``--runtime-env-json`` ``env_vars`` are in the driver's environment too, but are also shown
on the dashboard's job page: prefer ``ANTHROPIC_API_KEY_FILE``-style variables naming a file
on the head, or the key in the head's environment).

``ledger_dir`` is made absolute on the driver; on a cluster, give a directory that exists on
the head node (where the actors are pinned).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from actors.executor import RayExecutor
from llm.config import PROVIDERS, Settings, load_settings, read_dotenv
from llm.retry import RetryConfig
from runtime import exit_flush
from runtime.keys import account_keys
from runtime.limits_config import AccountSpec, load_limits
from runtime.routing import parse_fallbacks

logger = logging.getLogger("llm.runtime")

#: How long :meth:`Runtime.shutdown` waits for the journal's compaction.
COMPACT_TIMEOUT_S = 30.0
_DRIFT_FIELDS = ("anthropic_base_url", "openai_base_url", "google_base_url", "ledger_dir")
_SECRET_FIELDS = tuple(f"{p}_api_key" for p in PROVIDERS)


def public_settings(settings: Settings) -> dict[str, Any]:
    """The fields of ``settings`` that may be sent to actors: every field but the keys."""
    fields = settings.model_dump(exclude=set(_SECRET_FIELDS))
    fields["ledger_dir"] = str(Path(settings.ledger_dir).resolve())
    return fields


def _setting(name: str) -> str | None:
    """A variable from the environment, else from ``.env`` (like :func:`load_settings`)."""
    return os.environ.get(name) or read_dotenv(".env").get(name) or None


class Runtime:
    """Ray plus the shared actors, as seen from one driver; see the module docstring."""

    def __init__(
        self,
        address: str | None = None,
        *,
        namespace: str = "llm",
        settings: Settings | None = None,
        num_cpus: int | None = None,
        limits: dict[str, list[AccountSpec]] | None = None,
        retry_config: RetryConfig | None = None,
        fallbacks: str | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.address = address if address is not None else self.settings.ray_address
        self.namespace = namespace
        self.num_cpus = num_cpus
        self.limits = limits
        self.retry_config = retry_config
        # Parsed here so that a bad chain fails in the driver, not inside the router actor.
        self.fallbacks = parse_fallbacks(
            fallbacks if fallbacks is not None else _setting("LLM_FALLBACKS")
        )
        self.started_ray = False
        self._ledger: Any = None
        self._router: Any = None
        self._providers: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Runtime:
        """Start or join Ray (reusing an initialised one) and get or create the actors."""
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, namespace=self.namespace)
            else:
                ray.init(
                    address="local",  # never join some other cluster running on this machine
                    num_cpus=self.num_cpus,
                    include_dashboard=False,
                    namespace=self.namespace,
                )
            self.started_ray = True
        self._create_actors()
        exit_flush.remember(self)  # the ledger reaches Parquet even without shutdown()
        return self

    def _create_actors(self) -> None:
        from actors import factory

        fields = public_settings(self.settings)
        limits = self.limits if self.limits is not None else load_limits(self.settings)
        keys = account_keys(self.settings, limits)
        self._ledger = factory.get_or_create_ledger(fields["ledger_dir"], namespace=self.namespace)
        self._providers = factory.get_or_create_provider_actors(
            fields,
            limits,
            namespace=self.namespace,
            retry=self.retry_config.model_dump() if self.retry_config else None,
            keys=keys,
        )
        names = factory.provider_actor_names(limits, keys)
        self._router = factory.get_or_create_router(
            names, namespace=self.namespace, fallbacks=self.fallbacks
        )
        self._warn_on_drift(fields)

    def _warn_on_drift(self, fields: dict[str, Any]) -> None:
        """Warn when reused actors were created with other endpoints or another ledger."""
        import ray

        handles = self.provider_handles()
        if not handles:
            return
        theirs = ray.get(handles[0].describe.remote())["settings"]
        differ = sorted(k for k in _DRIFT_FIELDS if theirs.get(k) != fields.get(k))
        if differ:
            logger.warning(
                "llm runtime: the actors in namespace %r were created with other %s; "
                "they are used as they are (kill them to reconfigure)",
                self.namespace,
                ", ".join(differ),
            )

    def shutdown(self, kill_actors: bool = False) -> None:
        """Commit the ledger and compact its journal; with ``kill_actors`` also end the
        actors; stop Ray if we started it."""
        import ray

        exit_flush.forget(self)
        if not ray.is_initialized():
            return
        if self._ledger is not None:
            ray.get(self._ledger.flush.remote())
            self._compact_journal()
        if kill_actors:
            for handle in [*self.provider_handles(), self._router, self._ledger]:
                if handle is not None:
                    ray.kill(handle, no_restart=True)
            self._ledger, self._router, self._providers = None, None, {}
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

    def _compact_journal(self) -> None:
        """Compact the ledger's journal now (:meth:`LedgerActor.compact
        <actors.ledger_actor.LedgerActor.compact>`), so that what a job leaves in it does not
        depend on where the ledger actor's timer (every 10 s) was when the job ended.

        Cheap right after the flush: every row is in Parquet already, so what remains is one
        index query per sealed segment and an unlink (about 0.1 s for 28 MB of released
        segments, 20 ms when nothing can go). Correct whenever it runs: segments a writer
        still holds (the provider actors' open ones) are skipped, results a job still needs
        are kept or copied first, and a kill between any two steps loses nothing
        (``tests/test_journal_compaction.py``). A failure or a slow actor only leaves the
        work to the timer."""
        import ray

        try:
            ray.get(self._ledger.compact.remote(), timeout=COMPACT_TIMEOUT_S)
        except Exception as error:
            logger.warning(
                "llm runtime: journal compaction at shutdown left to the ledger actor (%s)",
                type(error).__name__,
            )

    def flush_ledger(self, timeout_s: float | None = None, *, drain_s: float = 0.0) -> None:
        """Write every journaled ledger row to Parquet now (waits up to ``timeout_s``).

        With ``drain_s`` and a Ray embedded here (whose actors end with this process), first
        wait up to that long for the provider actors' calls in flight to finish and be
        journaled: the provider bills them even if no one reads the answer.
        """
        import ray

        if self._ledger is None or not ray.is_initialized():
            return
        if drain_s > 0 and self.started_ray:
            self._drain(drain_s)
        ray.get(self._ledger.flush.remote(), timeout=timeout_s)

    def _drain(self, seconds: float) -> None:
        import ray

        deadline = time.monotonic() + seconds
        handles = self.provider_handles()
        while handles and time.monotonic() < deadline:
            try:
                busy = ray.get([h.stats.remote() for h in handles], timeout=seconds)
                pending = ray.get([h.journal_pending.remote() for h in handles], timeout=seconds)
            except Exception:  # an actor is gone: nothing more to wait for
                return
            if not any(s.in_flight for s in busy) and not any(pending):
                return
            time.sleep(0.05)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def is_started(self) -> bool:
        """Whether :meth:`start` has found or created the actors."""
        return self._router is not None

    # ------------------------------------------------------------------ handles

    def _require(self, handle: Any, what: str) -> Any:
        if handle is None:
            raise RuntimeError(f"Runtime not started: no {what} (call start() first)")
        return handle

    def ledger(self) -> Any:
        """The ledger actor's handle."""
        return self._require(self._ledger, "ledger")

    def router(self) -> Any:
        """The router actor's handle."""
        return self._require(self._router, "router")

    def provider_actors(self) -> dict[str, list[Any]]:
        """Provider actor handles, by provider."""
        return {p: list(hs) for p, hs in self._providers.items()}

    def provider_handles(self) -> list[Any]:
        return [h for hs in self._providers.values() for h in hs]

    def provider_stats(self) -> list[Any]:
        """``EngineStats`` of every provider actor."""
        import ray

        return ray.get([h.stats.remote() for h in self.provider_handles()])

    def executor(self, **kwargs: Any) -> RayExecutor:
        """A :class:`~actors.executor.RayExecutor` sending calls to these actors."""
        return RayExecutor(self, **kwargs)


def ray_executor(
    settings: Settings | None = None, retry_config: RetryConfig | None = None
) -> RayExecutor:
    """An executor owning a default :class:`Runtime` for ``settings`` (started, or joined with
    ``LLM_RAY_ADDRESS``, on first use; shut down when the executor is closed). This is what
    ``LLMService(runtime="ray")`` runs on."""
    return RayExecutor(Runtime(settings=settings, retry_config=retry_config), owns_runtime=True)
