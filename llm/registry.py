"""The model registry: loads ``llm/data/models.toml`` (plus user files) and answers look-ups.

Owns name resolution (canonical name, API id, dated alias; case-insensitive; a Gemini
``models/`` prefix is ignored), "did you mean" suggestions, user overrides (a user file is
deep-merged over the built-in entry it names), availability lists, lifecycle warnings and
the refusal of retired models (:func:`check_not_retired`).

Where prices come from, and why genai-prices is a test oracle and not the runtime source.
``genai-prices`` (pydantic's price database) is kept in the loop as an *oracle*:
``tests/test_genai_prices.py`` bills every registry model it knows (all 50 on 2026-11-27,
genai-prices 0.2.3) on a grid of usage vectors (cache reads, 5 m/1 h writes, reasoning, both
sides of each long-context threshold and of each dated price change) and requires the same
Decimal to the last digit. Using it as the *runtime* source was considered and rejected:

* it is exact (its prices are Decimals too), so exactness does not decide it;
* it knows prices only: max output, capabilities, lifecycle and replacements, minimum
  cacheable prompt, task scores and Gemini explicit-cache storage (no unit in 0.2.3) would
  still live here, so prices would come from two places;
* its way to update prices without a release is ``UpdatePrices``, a background thread that
  fetches a JSON file from GitHub: every Ray worker would fetch on its own, an offline
  cluster cannot, and the same call could be billed differently depending on whether the
  fetch had happened, so a ledger could not be reproduced. Here, a user updates prices
  without a release by naming a TOML file in ``LLM_MODELS_FILE`` (deep-merged over the
  built-in entries), read once, the same on every worker;
* it costs start-up time in every worker: import plus first price ~160-260 ms against
  ~25-40 ms to import and load this registry (same process, 3 runs, 2-core machine:
  ``python -c "import time; ..."`` as in the issue-10 report).

When a provider changes a price, update ``llm/data/models.toml`` (or a user file); the oracle
test then says whether the entry agrees with genai-prices.

File layout (built-in and user files alike)::

    [models."claude-sonnet-4.5"]          # key: canonical name, or any known name to override
    provider = "anthropic"
    api_id = "claude-sonnet-4-5"
    [models."claude-sonnet-4.5".pricing.standard]
    input = "3"                           # strings keep prices exact Decimals
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import os
import threading
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llm.exceptions import ModelNotFoundError, ModelRetiredError
from llm.models import ModelInfo, lifecycle_day

BUILTIN_FILE = Path(__file__).parent / "data" / "models.toml"
MODELS_FILE_ENV = "LLM_MODELS_FILE"
PROVIDERS = ("anthropic", "openai", "google")
_PREFIX = "models/"


def _key(name: str) -> str:
    """The look-up form of a name: trimmed, lower-case, without a ``models/`` prefix."""
    key = name.strip().lower()
    return key[len(_PREFIX) :] if key.startswith(_PREFIX) else key


def _names_of(model: ModelInfo) -> list[str]:
    return [model.name, model.api_id, *model.aliases]


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``; nested tables merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for field, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(field), dict):
            merged[field] = _deep_merge(merged[field], value)
        else:
            merged[field] = value
    return merged


def _check_consistency(model: ModelInfo) -> None:
    pricing = model.pricing
    if (pricing.long_context_threshold is None) != (pricing.long_context is None):
        raise ValueError("pricing.long_context and long_context_threshold must be set together")
    for change in pricing.changes:
        if (pricing.long_context is None) != (change.long_context is None):
            raise ValueError(
                f"pricing.changes ({change.effective_from}): long_context must be set exactly "
                "when the model has a long-context tier"
            )
    caps = model.capabilities
    if caps.reasoning_style is not None and not caps.reasoning:
        raise ValueError("capabilities.reasoning_style is set but reasoning is false")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle, parse_float=Decimal)
    except OSError as exc:
        raise ValueError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"model file {path} is not valid TOML: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ValueError(f"model file {path}: [models] must be a table of model tables")
    return models


class Registry:
    """A set of :class:`ModelInfo` records, indexed by every name they answer to."""

    def __init__(self, models: Iterable[ModelInfo] = ()) -> None:
        self._models: dict[str, ModelInfo] = {}  # canonical name -> record
        self._index: dict[str, str] = {}  # look-up key -> canonical name
        for model in models:
            self.add(model)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    # ----------------------------------------------------------------- changes

    def add(self, model: ModelInfo) -> None:
        """Add ``model``; it replaces a model with the same canonical name and takes over
        any name (API id, alias) another model answered to."""
        _check_consistency(model)
        old = self._models.pop(model.name, None)
        if old is not None:
            for name in _names_of(old):
                if self._index.get(_key(name)) == old.name:
                    del self._index[_key(name)]
        self._models[model.name] = model
        for name in _names_of(model):
            self._index[_key(name)] = model.name

    def add_file(self, path: str | os.PathLike[str]) -> list[str]:
        """Load a user TOML file; returns the canonical names it added or changed.

        An entry whose key is a known name is deep-merged over that model (so a file may
        override only some fields); any other key defines a new model named after the key.
        Raises ``ValueError`` naming the file and the model when an entry is invalid.
        """
        file = Path(path)
        changed = []
        for key, entry in _read_toml(file).items():
            if not isinstance(entry, dict):
                raise ValueError(f"model file {file}: [models.{key!r}] must be a table")
            model = self._merged(key, entry, source=file)
            self.add(model)
            changed.append(model.name)
        return changed

    def _merged(self, key: str, entry: dict[str, Any], *, source: Path) -> ModelInfo:
        existing = self.get(key)
        if existing is not None:
            data = _deep_merge(existing.model_dump(), entry)
        else:
            data = {"name": key, **entry}
        try:
            model = ModelInfo.model_validate(data)
            _check_consistency(model)
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"model file {source}: invalid model {key!r}: {exc}") from None
        return model

    # ----------------------------------------------------------------- look-ups

    def get(self, name: str) -> ModelInfo | None:
        """The model answering to ``name`` (any form), or ``None``."""
        canonical = self._index.get(_key(name))
        return self._models.get(canonical) if canonical is not None else None

    def resolve(self, name: str) -> ModelInfo:
        """Like :meth:`get` but raises :class:`ModelNotFoundError` with close matches."""
        model = self.get(name)
        if model is not None:
            return model
        suggestions = self.suggestions(name)
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise ModelNotFoundError(f"unknown model {name!r}{hint}", suggestions=suggestions)

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """Canonical names of the models whose names look most like ``name``."""
        matches = difflib.get_close_matches(_key(name), list(self._index), n=10, cutoff=0.6)
        canonical: list[str] = []
        for match in matches:
            found = self._index[match]
            if found not in canonical:
                canonical.append(found)
        return canonical[:limit]

    def models(self) -> list[ModelInfo]:
        """Every model, sorted by provider then name."""
        return sorted(self._models.values(), key=lambda m: (m.provider, m.name))

    def available(
        self,
        provider: str | None = None,
        *,
        include_retired: bool = False,
        today: dt.date | None = None,
    ) -> list[str]:
        """Canonical names, optionally of one provider; retired models only on request."""
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        day = lifecycle_day(today)
        return [
            model.name
            for model in self.models()
            if (provider is None or model.provider == provider)
            and (include_retired or model.status_on(day) != "retired")
        ]


# --------------------------------------------------------------------- module level

_lock = threading.Lock()
_registry: Registry | None = None


def load_registry(extra_files: Iterable[str | os.PathLike[str]] = ()) -> Registry:
    """A fresh registry: the built-in models, then each of ``extra_files`` in order."""
    registry = Registry()
    registry.add_file(BUILTIN_FILE)
    for path in extra_files:
        registry.add_file(path)
    return registry


def get_registry() -> Registry:
    """The shared registry (built once; includes the file named by ``LLM_MODELS_FILE``)."""
    global _registry
    with _lock:
        if _registry is None:
            user_file = os.environ.get(MODELS_FILE_ENV)
            _registry = load_registry([user_file] if user_file else [])
        return _registry


def reset_registry() -> None:
    """Forget the shared registry, so the next :func:`get_registry` reloads (tests)."""
    global _registry
    with _lock:
        _registry = None


def get_model_info(name: str) -> ModelInfo | None:
    """The model for a canonical name, API id, dated id or alias; ``None`` if unknown."""
    return get_registry().get(name)


def resolve_model(name: str) -> ModelInfo:
    """Like :func:`get_model_info` but raises :class:`ModelNotFoundError` with suggestions."""
    return get_registry().resolve(name)


def list_available_models(
    provider: str | None = None,
    *,
    include_retired: bool = False,
    today: dt.date | None = None,
) -> list[str]:
    """Canonical names of the known models (retired ones only if ``include_retired``)."""
    return get_registry().available(provider, include_retired=include_retired, today=today)


def all_models() -> list[ModelInfo]:
    """Every model in the shared registry."""
    return get_registry().models()


def lifecycle_warning(model: ModelInfo, today: dt.date | None = None) -> str | None:
    """A one-line warning for a deprecated or retired model; ``None`` when it is active.

    ``lifecycle.note`` (provenance, caveats) is not repeated here; callers may show it.
    """
    life = model.lifecycle
    status = model.status_on(today)
    if status == "active":
        return None
    if status == "retired":
        when = f" on {life.retires_on.isoformat()}" if life.retires_on else ""
        text = f"{model.name} was retired{when}" if when else f"{model.name} is retired"
    else:
        when = f" and retires on {life.retires_on.isoformat()}" if life.retires_on else ""
        text = f"{model.name} is deprecated{when}"
    if life.replacement:
        text += f"; use {life.replacement}"
    return text


def check_not_retired(model: ModelInfo, today: dt.date | None = None) -> None:
    """Raise :class:`ModelRetiredError` (naming the replacement) if ``model`` is retired on
    ``today``: the provider would answer 404, so such a call must never be sent."""
    if model.status_on(today) != "retired":
        return
    retired_on = model.lifecycle.retires_on
    raise ModelRetiredError(
        lifecycle_warning(model, today) or f"{model.name} is retired",
        replacement=model.lifecycle.replacement,
        retired_on=retired_on.isoformat() if retired_on else None,
        provider=model.provider,
        model=model.name,
        status=404,
    )
