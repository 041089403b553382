"""Input of the batch job: stream rows from JSONL or Parquet and check each row's shape.

A row is one ``generate`` call::

    {"id": "q1", "model": "claude-haiku-4.5", "messages": [{"role": "user", "content": "Hi"}],
     "max_tokens": 200}

* ``id`` (string; an integer is accepted and turned into a string) names the row in the
  output. A row without one gets the id ``line-<n>`` and becomes an error row.
* ``model``, or ``task`` with an optional ``budget`` (``low``/``medium``/``high``) to let
  the recommendation policy pick; with neither the settings' default model is used.
* ``messages``: a list of ``{"role", "content"}`` where content is a string or a list of
  parts (``{"type": "text", "text"}``, ``{"type": "image", "data", "media_type"}``). Or the
  shorthand ``prompt`` (a string) with an optional ``system`` string.
* Any option of ``generate``: ``max_tokens``, ``temperature``, ``enable_caching``,
  ``structured_output_schema``, ``tools``, ``tool_choice``, ``reasoning_effort``,
  ``timeout``, ``cache_ttl``, ``metadata``.

Anything else (an unknown field, a value of the wrong type, a line that is not JSON) turns
the row into an :class:`InvalidRow`, which the job writes as an error row and goes on.
Range and semantic checks (max_tokens within the model's limit, a valid JSON schema, a
known model...) are the service's, so they give the same typed errors as a direct call.
Error messages name fields and types only, never row content.

Rows are streamed: JSONL line by line, Parquet batch by batch
(``ParquetFile.iter_batches``); nothing holds the whole input. In Parquet, the columns
``messages``, ``tools``, ``structured_output_schema``, ``tool_choice`` and ``metadata`` may
hold JSON text or nested structs/lists (nulls inside structs are dropped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from llm.exceptions import InvalidRequestError, LLMError
from llm.prepare import pick_model, prepare_request
from llm.providers.base import ProviderRequest

#: The model of rows that name none, when the job is given no default (the settings' default).
DEFAULT_MODEL = "claude-haiku-4.5"

#: generate options a row may carry, with the Python types each accepts.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "max_tokens": (int,),
    "temperature": (int, float),
    "enable_caching": (bool,),
    "structured_output_schema": (dict,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "reasoning_effort": (str,),
    "timeout": (int, float),
    "cache_ttl": (str,),
    "metadata": (dict,),
}
_ROUTING_FIELDS = ("model", "task", "budget")
_SHORTHAND_FIELDS = ("prompt", "system")
ALLOWED_FIELDS = frozenset({"id", "messages", *_ROUTING_FIELDS, *_SHORTHAND_FIELDS, *OPTION_TYPES})
#: Parquet columns that may hold JSON text instead of nested values.
JSON_COLUMNS = ("messages", "tools", "structured_output_schema", "tool_choice", "metadata")
PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class RowRequest:
    """One valid input row, ready to be sent; ``job_id``/``request_id`` are set by the job."""

    row_id: str
    line: int
    messages: list[dict[str, Any]]
    model: str | None = None
    task: str | None = None
    budget: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    request_id: str = ""
    #: (default model, caching default) -> the prepared request, or the error preparing it.
    _prepared: dict[tuple[str, bool], ProviderRequest | LLMError] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def request(
        self, *, default_model: str = DEFAULT_MODEL, caching_default: bool = False
    ) -> ProviderRequest:
        """The row as a typed :class:`ProviderRequest`, prepared once by the service's own
        preparation (:mod:`llm.prepare`) and kept: the dry run, the budget guard and the
        cache-first scheduler all read this one. Raises the typed error of an invalid row."""
        key = (default_model, caching_default)
        found = self._prepared.get(key)
        if found is None:
            try:
                found = self._prepare(default_model, caching_default)
            except LLMError as error:
                found = error
            self._prepared[key] = found
        if isinstance(found, LLMError):
            raise found.with_traceback(None)
        return found

    def _prepare(self, default_model: str, caching_default: bool) -> ProviderRequest:
        info = pick_model(self.model, self.task, self.budget, default_model=default_model)
        opts = {k: v for k, v in self.options.items() if k != "metadata"}
        opts["enable_caching"] = bool(opts.get("enable_caching", caching_default))
        return prepare_request(info, self.messages, **opts)

    def for_job(self, job_id: str, request_id: str) -> RowRequest:
        """A copy bound to ``job_id`` with its idempotency key."""
        return replace(self, job_id=job_id, request_id=request_id)

    @property
    def model_label(self) -> str:
        """What the row asked for: the model name, or ``task:<task>/<budget>``."""
        if self.model is not None:
            return self.model
        if self.task is not None:
            return f"task:{self.task}/{self.budget or 'medium'}"
        return "default"

    def __repr__(self) -> str:  # rows hold prompts: keep them out of logs
        return f"RowRequest(row_id={self.row_id!r}, line={self.line}, model={self.model_label!r})"


@dataclass(frozen=True)
class InvalidRow:
    """A row that cannot be sent; written to the output as an error row."""

    row_id: str
    line: int
    error: LLMError
    model: str | None = None


InputItem = RowRequest | InvalidRow


# ---------------------------------------------------------------------- row checks


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_type(name: str, value: Any, types: tuple[type, ...]) -> None:
    is_bool = isinstance(value, bool)
    if (is_bool and bool not in types) or not isinstance(value, types):
        wanted = " or ".join(t.__name__ for t in types)
        raise InvalidRequestError(f"field {name!r} must be {wanted}, not {_type_name(value)}")


def _row_id(raw: dict[str, Any], line: int) -> str:
    value = raw.get("id")
    if value is None or value == "":
        raise InvalidRequestError("the row has no 'id'")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidRequestError(f"field 'id' must be str, not {_type_name(value)}")
    return value


def _messages(raw: dict[str, Any]) -> list[dict[str, Any]]:
    messages = raw.get("messages")
    prompt = raw.get("prompt")
    system = raw.get("system")
    if messages is not None and prompt is not None:
        raise InvalidRequestError("give either 'messages' or 'prompt', not both")
    if system is not None:
        _check_type("system", system, (str,))
    if prompt is not None:
        _check_type("prompt", prompt, (str,))
        messages = [{"role": "user", "content": prompt}]
    if messages is None:
        raise InvalidRequestError("the row has neither 'messages' nor 'prompt'")
    _check_type("messages", messages, (list,))
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{index}] must be an object")
        content = message.get("content", "")
        if not isinstance(content, str | list):
            raise InvalidRequestError(f"messages[{index}].content must be a string or a list")
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return list(messages)


def _routing(raw: dict[str, Any]) -> dict[str, str | None]:
    values = {name: raw.get(name) for name in _ROUTING_FIELDS}
    for name, value in values.items():
        if value is not None:
            _check_type(name, value, (str,))
    if values["model"] is not None and values["task"] is not None:
        raise InvalidRequestError("give either 'model' or 'task', not both")
    if values["budget"] is not None and values["task"] is None:
        raise InvalidRequestError("'budget' is used only together with 'task'")
    return values


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    options = {}
    for name, types in OPTION_TYPES.items():
        value = raw.get(name)
        if value is None:
            continue
        _check_type(name, value, types)
        options[name] = value
    return options


def parse_row(raw: Any, line: int) -> InputItem:
    """Check one decoded row; nulls count as absent. Never raises for bad rows."""
    fallback_id = f"line-{line}"
    if not isinstance(raw, dict):
        error = InvalidRequestError(f"line {line}: a row must be a JSON object")
        return InvalidRow(fallback_id, line, error)
    raw = {key: value for key, value in raw.items() if value is not None}
    model = raw.get("model") if isinstance(raw.get("model"), str) else None
    try:
        row_id = _row_id(raw, line)
    except InvalidRequestError as error:
        return InvalidRow(fallback_id, line, error, model)
    try:
        unknown = sorted(set(raw) - ALLOWED_FIELDS)
        if unknown:
            raise InvalidRequestError(f"unknown field(s): {', '.join(map(repr, unknown))}")
        routing = _routing(raw)
        return RowRequest(
            row_id=row_id,
            line=line,
            messages=_messages(raw),
            model=routing["model"],
            task=routing["task"],
            budget=routing["budget"],
            options=_options(raw),
        )
    except InvalidRequestError as error:
        return InvalidRow(row_id, line, error, model)


# ---------------------------------------------------------------------- readers


def _is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in (".parquet", ".pq")


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    return [path]


def iter_jsonl(path: Path) -> Iterator[InputItem]:
    """Rows of a JSONL file, one per non-blank line (line numbers are 1-based)."""
    with path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            try:
                decoded = json.loads(raw_line)
            except (UnicodeDecodeError, ValueError):
                error = InvalidRequestError(f"line {line_no} is not valid JSON")
                yield InvalidRow(f"line-{line_no}", line_no, error)
                continue
            yield parse_row(decoded, line_no)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _decode_parquet_row(raw: dict[str, Any]) -> dict[str, Any]:
    row = {key: _drop_nulls(value) for key, value in raw.items()}
    for name in JSON_COLUMNS:
        value = row.get(name)
        if isinstance(value, str) and not (name == "tool_choice" and not value.startswith("{")):
            try:
                row[name] = json.loads(value)
            except ValueError:
                raise InvalidRequestError(f"column {name!r} holds text that is not JSON") from None
    return row


def iter_parquet(path: Path) -> Iterator[InputItem]:
    """Rows of a Parquet file (or a directory of them), batch by batch."""
    line = 0
    for file in _parquet_files(path):
        for batch in pq.ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for raw in batch.to_pylist():
                line += 1
                try:
                    decoded = _decode_parquet_row(raw)
                except InvalidRequestError as error:
                    row_id = raw.get("id")
                    yield InvalidRow(str(row_id) if row_id else f"line-{line}", line, error)
                    continue
                yield parse_row(decoded, line)


def read_rows(path: str | Path) -> Iterator[InputItem]:
    """Stream the rows of ``path`` (JSONL, or Parquet by suffix or for a directory)."""
    source = Path(path)
    return iter_parquet(source) if _is_parquet(source) else iter_jsonl(source)


def count_rows(path: str | Path) -> int:
    """Number of rows in ``path`` without parsing them (non-blank lines, or Parquet footers)."""
    source = Path(path)
    if _is_parquet(source):
        return sum(pq.ParquetFile(f).metadata.num_rows for f in _parquet_files(source))
    count = 0
    with source.open("rb") as handle:
        for raw_line in handle:
            if raw_line.strip():
                count += 1
    return count
