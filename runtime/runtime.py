"""Start or join Ray and find (or create) the shared actors: ledger, router, provider actors.

::

    from runtime.runtime import Runtime

    runtime = Runtime().start()             # embedded Ray on this machine
    runtime = Runtime("auto").start()       # join the cluster this machine belongs to
    executor = runtime.executor()           # a RayExecutor for LLMService(executor=...)
    ...
    runtime.shutdown()                      # commits the ledger; actors keep running

Every driver that starts a :class:`Runtime` on the same cluster (same ``namespace``) gets
the same actors: one per provider account (from :func:`runtime.limits_config.load_limits`),
one router and one ledger. The first driver creates them with its settings and limits; later
drivers reuse them as they are (kill them, ``shutdown(kill_actors=True)``, to reconfigure).

API keys never travel as actor arguments (those are stored in Ray's GCS and shown on the
dashboard); only the non-secret settings do (:func:`public_settings`). The actors read their
keys from their own environment:

* embedded Ray: the worker processes inherit the driver's environment as it is at
  ``ray.init`` time. Before starting Ray embedded, :meth:`Runtime.start` exports into its own
  environment any provider key that came from ``.env`` or ``Settings`` only;
* a cluster: start the job with the keys in its runtime environment, e.g.
  ``RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir .
  --runtime-env-json '{"env_vars": {"ANTHROPIC_API_KEY": "…"}}' -- python -m jobs.demo``,
  or start the nodes with the keys in their environment.

The exception is a local emulator, whose key is no secret: for a provider whose base URL is
a loopback address and whose key is the emulator's default (``emulator-key``) or whose
settings say ``offline``, the key is passed in the settings (see
:mod:`actors.provider_actor`).

``ledger_dir`` is made absolute on the driver; on a cluster, give a directory that exists on
the head node (where the actors are pinned).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llm.config import PROVIDERS, Settings, load_settings, read_dotenv
from llm.retry import RetryConfig
from runtime import exit_flush
from runtime.limits_config import AccountSpec, load_limits
from runtime.routing import parse_fallbacks

logger = logging.getLogger("llm.runtime")

EMULATOR_KEY = "emulator-key"
_DRIFT_FIELDS = ("anthropic_base_url", "openai_base_url", "google_base_url", "ledger_dir")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_SECRET_FIELDS = tuple(f"{p}_api_key" for p in PROVIDERS)
_KEY_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GOOGLE_API_KEY",
}


def public_settings(settings: Settings) -> dict[str, Any]:
    """The fields of ``settings`` that may be sent to actors: no key, except an emulator's."""
    fields = settings.model_dump(exclude=set(_SECRET_FIELDS))
    fields["ledger_dir"] = str(Path(settings.ledger_dir).resolve())
    for provider in PROVIDERS:
        key = settings.api_key(provider)
        if key and _is_emulator_key(settings, provider, key):
            fields[f"{provider}_api_key"] = key
    return fields


def _is_emulator_key(settings: Settings, provider: str, key: str) -> bool:
    host = urlparse(settings.base_url(provider) or "").hostname
    return host in _LOOPBACK and (key == EMULATOR_KEY or settings.offline)


def export_keys(settings: Settings, environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Put keys known only to ``settings`` into ``environ`` (for embedded workers); return names."""
    exported = []
    for provider, name in _KEY_ENV.items():
        key = settings.api_key(provider)
        if (
            key
            and not environ.get(name)
            and not (provider == "google" and environ.get("GEMINI_API_KEY"))
        ):
            environ[name] = key
            exported.append(name)
    return exported


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
                export_keys(self.settings, os.environ)
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
        self._ledger = factory.get_or_create_ledger(fields["ledger_dir"], namespace=self.namespace)
        self._providers = factory.get_or_create_provider_actors(
            fields,
            limits,
            namespace=self.namespace,
            retry=self.retry_config.model_dump() if self.retry_config else None,
        )
        names = {
            provider: [factory.provider_actor_name(provider, spec.name) for spec in accounts]
            for provider, accounts in limits.items()
        }
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
        """Commit the ledger; with ``kill_actors`` also end the actors; stop Ray if we started it."""
        import ray

        exit_flush.forget(self)
        if not ray.is_initialized():
            return
        if self._ledger is not None:
            ray.get(self._ledger.flush.remote())
        if kill_actors:
            for handle in [*self.provider_handles(), self._router, self._ledger]:
                if handle is not None:
                    ray.kill(handle, no_restart=True)
            self._ledger, self._router, self._providers = None, None, {}
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

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

    def executor(self, **kwargs: Any) -> Any:
        """A :class:`~runtime.executor.RayExecutor` sending calls to these actors."""
        from runtime.executor import RayExecutor

        return RayExecutor(self, **kwargs)
