"""How a provider account's API key reaches its shared provider actor, and what that actor is
called.

Provider actors are named, detached and shared by every driver of a cluster; they run in
worker processes whose environment is the cluster's (the environment ``ray start`` ran in,
plus the ``runtime_env`` of the job that created the actor), not the driver's. A driver that
joins with ``--address`` and has its key in its own shell must still have its calls made with
that key; two drivers with different keys must never share an actor (nor its rate limiter),
and two drivers with the same key must.

The decisions, and why:

* **The driver resolves the key** (:func:`resolve_driver_key`). For an account without
  ``api_key_env``: the key of the driver's :class:`~llm.config.Settings` (its environment over
  its ``.env``, see :data:`llm.config.API_KEY_ENV`). For an ``[[accounts]]`` entry with
  ``api_key_env``: that variable in the driver's environment, then in its ``.env``. Each
  variable may instead name a file holding the key (``<VARIABLE>_FILE``,
  :func:`llm.config.key_from`). Then, for
  both, the ``env_vars`` of the driver's Ray job ``runtime_env`` (``ray.init(runtime_env=…)``
  sets them for the job's workers, not for the driver process itself).
* **The key travels as an actor constructor argument, sealed** (:class:`SealedKey`). Ray keeps
  constructor arguments in its GCS, so a restarted actor (``max_restarts=-1``) gets its key
  back, and shows them nowhere: not on the dashboard, not in the state API (``ray list actors
  --detail``), not in a log. ``runtime_env`` ``env_vars`` are shown there (the job's and each
  actor's ``serialized_runtime_env``), so a key never goes that way from us. Sealing (XOR with
  a random pad carried alongside) is not encryption: it keeps the key's text out of every
  repr, pickle and byte dump (GCS tables, Redis, spilled objects), so that nothing shows it
  and a search for it finds nothing. Whoever can run code on the cluster can reach the key
  anyway (by calling the actor), so the cluster's token authentication is the boundary.
* **The actor's name carries the key's fingerprint** (:func:`fingerprint`): HMAC-SHA256 of
  the key under a random per-cluster salt kept in Ray's internal KV store
  (:func:`cluster_salt`), truncated to 12 hex digits. Same key on the same cluster, same name:
  drivers with one key share one actor and its limiter; different keys get different actors
  (48 bits: two keys of one cluster collide with odds of about 2^-48). A keyed hash of a
  high-entropy key cannot be reversed, and the salt makes a fingerprint meaningless outside
  its cluster (it cannot be matched against a list of known keys without the salt).
* **A driver that has no key** gets the account's actor without a fingerprint
  (``llm-provider-anthropic-default``), which reads the key from its own environment: the
  cluster's (e.g. ``ANTHROPIC_API_KEY=… ray start --head`` on every node). If that holds none
  either, each call fails with a :class:`~llm.exceptions.ConfigurationError` that names every
  place looked in (:func:`missing_key_message`), and never a value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm.config import API_KEY_ENV, Settings, key_from, read_dotenv
from llm.exceptions import ConfigurationError
from runtime.limits_config import AccountSpec

#: Hex digits of a key fingerprint in an actor name.
FINGERPRINT_HEX = 12
#: Where the per-cluster salt lives in Ray's internal KV store.
SALT_KEY = b"key-fingerprint-salt"
SALT_NAMESPACE = b"llm-layer"
README_SECTION = "README.md, 'Running on a cluster'"


class SealedKey:
    """An API key on its way to a provider actor: no repr, str or pickle shows its text.

    ``reveal()`` gives the key back; only :func:`actor_key` calls it. See the module docstring
    for what sealing is (and is not).
    """

    __slots__ = ("_data", "_pad")

    def __init__(self, key: str) -> None:
        raw = key.encode()
        self._pad = secrets.token_bytes(len(raw))
        self._data = bytes(a ^ b for a, b in zip(raw, self._pad, strict=True))

    @classmethod
    def _from_parts(cls, pad: bytes, data: bytes) -> SealedKey:
        sealed = cls.__new__(cls)
        sealed._pad, sealed._data = pad, data
        return sealed

    def reveal(self) -> str:
        """The plain key."""
        return bytes(a ^ b for a, b in zip(self._data, self._pad, strict=True)).decode()

    def __reduce__(self) -> tuple[Any, tuple[bytes, bytes]]:
        return (SealedKey._from_parts, (self._pad, self._data))

    def __repr__(self) -> str:
        return "SealedKey('**********')"

    __str__ = __repr__


def fingerprint(key: str, salt: bytes) -> str:
    """The key's fingerprint on a cluster: HMAC-SHA256 under ``salt``, 12 hex digits."""
    digest = hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()
    return digest[:FINGERPRINT_HEX]


def cluster_salt() -> bytes:
    """The cluster's random fingerprint salt, created by the first driver that asks.

    Kept in Ray's internal KV store (cluster-wide, shown nowhere); ``overwrite=False`` makes
    concurrent first drivers agree on one value. Ray must be initialised.
    """
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(
        SALT_KEY, secrets.token_bytes(16), overwrite=False, namespace=SALT_NAMESPACE
    )
    salt = internal_kv._internal_kv_get(SALT_KEY, namespace=SALT_NAMESPACE)
    if not salt:
        raise ConfigurationError("could not read the key-fingerprint salt from Ray's KV store")
    return bytes(salt)


def job_env_vars() -> dict[str, str]:
    """The ``env_vars`` of this driver's Ray job ``runtime_env`` (empty without Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        env = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    except Exception:  # no runtime context (e.g. Ray client before connect): nothing there
        return {}
    return {str(k): str(v) for k, v in env.items()}


def key_env_names(provider: str, api_key_env: str | None) -> tuple[str, ...]:
    """The variables holding an account's key: its ``api_key_env``, else the provider's."""
    return (api_key_env,) if api_key_env else API_KEY_ENV.get(provider, ())


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    """The first key among ``names`` (each variable, or the file its ``_FILE`` twin names)."""
    return next(filter(None, (key_from(env, name) for name in names)), None)


def resolve_driver_key(
    spec: AccountSpec,
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
    job_env: Mapping[str, str] | None = None,
) -> str | None:
    """The key the driver has for ``spec``'s account, or None (see the module docstring).

    ``environ`` defaults to ``os.environ``, ``dotenv`` to ``./.env``, ``job_env`` to
    :func:`job_env_vars`.
    """
    names = key_env_names(spec.provider, spec.api_key_env)
    if spec.api_key_env is None:
        key = settings.api_key(spec.provider) or None
    else:
        key = _first(os.environ if environ is None else environ, names)
        if key is None:
            key = _first(read_dotenv(".env") if dotenv is None else dotenv, names)
    if key is None:
        key = _first(job_env_vars() if job_env is None else job_env, names)
    return key


@dataclass(frozen=True)
class AccountKey:
    """What a driver hands to the factory for one account: the key sealed, or None."""

    provider: str
    account: str
    sealed: SealedKey | None = None
    fingerprint: str | None = None


def account_keys(
    settings: Settings,
    limits: Mapping[str, Sequence[AccountSpec]],
    *,
    salt: bytes | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
    job_env: Mapping[str, str] | None = None,
) -> dict[tuple[str, str], AccountKey]:
    """The driver's key of every account of ``limits``, by ``(provider, account)``.

    ``salt`` defaults to :func:`cluster_salt` (asked only if some key was found).
    """
    dotenv = read_dotenv(".env") if dotenv is None else dotenv
    job_env = job_env_vars() if job_env is None else job_env
    found: dict[tuple[str, str], AccountKey] = {}
    for provider, specs in limits.items():
        for spec in specs:
            key = resolve_driver_key(
                spec, settings, environ=environ, dotenv=dotenv, job_env=job_env
            )
            entry = AccountKey(provider, spec.name)
            if key is not None:
                salt = cluster_salt() if salt is None else salt
                entry = AccountKey(provider, spec.name, SealedKey(key), fingerprint(key, salt))
            found[(provider, spec.name)] = entry
    return found


def actor_key(
    sealed: SealedKey | None, env_names: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """``(key, where it came from)`` in a provider actor: the driver's sealed key, else the
    first of ``env_names`` set in the actor's own environment; ``(None, None)`` if neither."""
    if sealed is not None:
        return sealed.reveal(), "the driver"
    env = os.environ if environ is None else environ
    for name in env_names:
        key = key_from(env, name)
        if key:
            return key, f"the cluster's environment ({name})"
    return None, None


def missing_key_message(
    provider: str, account: str, api_key_env: str | None, node: str | None = None
) -> str:
    """Why a provider actor has no key, naming every place looked in (never a value)."""
    variables = key_env_names(provider, api_key_env)
    names = " / ".join(variables)
    files = " / ".join(f"{name}_FILE" for name in variables)
    if api_key_env:
        driver = f"its environment and its .env file ({names}, from [[accounts]] api_key_env)"
    else:
        driver = f"its settings, i.e. its environment and its .env file ({names})"
    where = f" on node {node}" if node else ""
    return (
        f"no API key for {provider} account {account!r}. The driver that created this "
        f"provider actor had none: it looks in {driver}, then in its Ray job's runtime_env "
        f"env_vars ({names}). The actor's own environment{where} (the cluster's: the "
        f"environment `ray start` ran in, plus the creating job's runtime_env) has no "
        f"{names} either. Set {names} where the driver runs (its environment or .env; the "
        f"key reaches the actor sealed, never in a log or the dashboard), or in the "
        f"environment of `ray start` on the cluster's nodes ({files} may name a file holding "
        f"the key instead). See {README_SECTION}."
    )


def require_key(
    provider: str,
    account: str,
    sealed: SealedKey | None,
    api_key_env: str | None,
    environ: Mapping[str, str] | None = None,
    node: str | None = None,
) -> tuple[str, str]:
    """:func:`actor_key`, or a :class:`ConfigurationError` from :func:`missing_key_message`."""
    key, source = actor_key(sealed, key_env_names(provider, api_key_env), environ)
    if key is None or source is None:
        raise ConfigurationError(
            missing_key_message(provider, account, api_key_env, node), provider=provider
        )
    return key, source
