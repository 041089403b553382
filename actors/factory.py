"""The one place ``ray.remote`` is applied: actor names, options, and get-or-create helpers.

Every actor is named, detached and lives in one namespace (``llm`` by default), so every
driver of a cluster finds the same ones (``get_if_exists=True``). Actors restart forever
(``max_restarts=-1``) and Ray re-runs the calls that were in flight on a restarted actor
(``max_task_retries=-1``); the ledger's dedup by request id keeps billing single. Actors
take no CPU slot (``num_cpus=0``): they mostly wait on the network. On a cluster started
from ``cluster.yaml`` the head node carries the custom resource ``llm_head`` and the actors
are pinned there (the ledger directory is on the head's disk); an embedded Ray has no such
resource and the pin is left out.

Actor names: ``llm-ledger``; ``llm-provider-<provider>-<account>-<fingerprint>``, where the
fingerprint is the driver's key's (:func:`runtime.keys.fingerprint`: drivers with the same key
share the actor, drivers with different keys never do), or ``llm-provider-<provider>-<account>``
for the actor of a driver that has no key (it reads the cluster's environment);
``llm-router-<digest>``, one router per set of provider actors (a digest of their names), so
that a driver's route table lists only the actors of its own keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from actors.ledger_actor import LedgerActor
from actors.provider_actor import ProviderActor
from actors.router_actor import RouterActor
from runtime.keys import AccountKey
from runtime.limits_config import AccountSpec

LEDGER_NAME = "llm-ledger"
ROUTER_NAME = "llm-router"
HEAD_RESOURCE = "llm_head"
#: Calls one provider actor runs at once: above any account's in-flight bound
#: (``LLM_MAX_CONNECTIONS``, 2,048 by default; see runtime/inflight.py), so Ray never caps it.
PROVIDER_CONCURRENCY = 4096


def provider_actor_name(provider: str, account: str, fingerprint: str | None = None) -> str:
    """The name of the actor of one provider account (and key, by its fingerprint)."""
    base = f"llm-provider-{provider}-{account}"
    return f"{base}-{fingerprint}" if fingerprint else base


def provider_actor_names(
    limits: Mapping[str, Sequence[AccountSpec]],
    keys: Mapping[tuple[str, str], AccountKey] | None = None,
) -> dict[str, list[str]]:
    """The names of the actors of ``limits``' accounts with ``keys``, by provider."""
    keys = keys or {}
    return {
        provider: [
            provider_actor_name(provider, spec.name, _fingerprint(keys, provider, spec.name))
            for spec in accounts
        ]
        for provider, accounts in limits.items()
    }


def router_name(provider_actors: Mapping[str, Sequence[str]]) -> str:
    """The name of the router of exactly these provider actors."""
    canonical = json.dumps({p: list(ns) for p, ns in sorted(provider_actors.items())})
    return f"{ROUTER_NAME}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def _fingerprint(
    keys: Mapping[tuple[str, str], AccountKey], provider: str, account: str
) -> str | None:
    found = keys.get((provider, account))
    return found.fingerprint if found else None


def actor_options(
    name: str, namespace: str, *, max_concurrency: int = PROVIDER_CONCURRENCY
) -> dict[str, Any]:
    """The ``.options(...)`` every actor of the runtime is created with."""
    import ray

    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": -1,
        "max_concurrency": max_concurrency,
        "num_cpus": 0,
        # Every row of a job is one Ray task on these actors. Ray's task events (the state
        # behind `ray list tasks` and the dashboard's task view) kept native memory in the
        # actor, in the driver and in the GCS growing with each task (about 1 KiB per row in
        # a provider actor); the runtime's own metrics and spans (runtime/telemetry.py) say
        # what those events said, in bounded memory.
        "enable_task_events": False,
    }
    if ray.cluster_resources().get(HEAD_RESOURCE):
        options["resources"] = {HEAD_RESOURCE: 0.001}
    return options


def _remote(cls: type) -> Any:
    import ray

    return ray.remote(cls)


def get_or_create_ledger(directory: str, *, namespace: str = "llm", **kwargs: Any) -> Any:
    """The handle of the ledger actor writing to ``directory`` (created if missing), told to
    start following the journal."""
    options = actor_options(LEDGER_NAME, namespace)
    handle = _remote(LedgerActor).options(**options).remote(directory, **kwargs)
    handle.start.remote()
    return handle


def get_or_create_router(
    provider_actors: Mapping[str, Sequence[str]],
    *,
    namespace: str = "llm",
    fallbacks: str | Mapping[str, Sequence[str]] | None = None,
    **kwargs: Any,
) -> Any:
    """The handle of the router actor (created if missing) knowing ``provider_actors``."""
    options = actor_options(router_name(provider_actors), namespace)
    names = {p: list(ns) for p, ns in provider_actors.items()}
    return (
        _remote(RouterActor)
        .options(**options)
        .remote(names, namespace=namespace, fallbacks=fallbacks, **kwargs)
    )


def get_or_create_provider_actors(
    settings_fields: Mapping[str, Any],
    limits: Mapping[str, Sequence[AccountSpec]],
    *,
    namespace: str = "llm",
    retry: Mapping[str, Any] | None = None,
    ledger_name: str | None = LEDGER_NAME,
    journal_commit_s: float = 0.0,
    keys: Mapping[tuple[str, str], AccountKey] | None = None,
) -> dict[str, list[Any]]:
    """One actor per provider account of ``limits`` (from ``load_limits``), by provider.

    ``settings_fields`` must hold no secret (see :func:`actors.runtime.public_settings`);
    ``keys`` (from :func:`runtime.keys.account_keys`) are the driver's sealed keys by
    ``(provider, account)``: each goes to its account's actor, whose name has its fingerprint.
    """
    cls = _remote(ProviderActor)
    keys = keys or {}
    handles: dict[str, list[Any]] = {}
    names = provider_actor_names(limits, keys)
    for provider, accounts in limits.items():
        for spec, name in zip(accounts, names[provider], strict=True):
            key = keys.get((provider, spec.name))
            options = actor_options(name, namespace)
            handle = cls.options(**options).remote(
                provider,
                spec.name,
                dict(settings_fields),
                spec.api_key_env,
                spec.limits.model_dump(),
                dict(retry) if retry else None,
                ledger_name,
                namespace,
                journal_commit_s,
                key=key.sealed if key else None,
            )
            handles.setdefault(provider, []).append(handle)
    return handles
