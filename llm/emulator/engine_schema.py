"""Deterministic JSON documents for a JSON Schema: one that validates, and one that does not.

The emulator answers structured-output requests and forced tool calls with documents built
here. :func:`instance_for` walks the schema (``type`` and type lists, ``enum``, ``const``,
``properties``/``required``/``additionalProperties``, ``items``/``prefixItems``/
``minItems``/``maxItems``/``uniqueItems``, string ``minLength``/``maxLength``/``format``,
numeric bounds and ``multipleOf``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into ``$defs``
or ``definitions``) and picks values with the given random generator, so the same seed gives
the same document. :func:`violating_instance` returns a document that fails validation.
"""

from __future__ import annotations

import math
import random
from typing import Any

_WORDS = (
    "alpha", "amber", "basin", "cedar", "delta", "ember", "fjord", "grove", "harbor",
    "island", "jade", "kelp", "lumen", "meadow", "nectar", "orbit", "prism", "quartz",
    "river", "summit", "tundra", "umber", "valley", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip
_FORMATS = {
    "date-time": "2026-01-15T10:30:00Z",
    "date": "2026-01-15",
    "time": "10:30:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/resource",
    "url": "https://example.com/resource",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "ipv4": "192.0.2.10",
    "ipv6": "2001:db8::10",
    "hostname": "example.com",
    "duration": "P3D",
}
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")
_MAX_DEPTH = 8


class SchemaError(ValueError):
    """The schema cannot be satisfied by this generator (for example a broken ``$ref``)."""


def instance_for(schema: Any, rng: random.Random) -> Any:
    """A JSON value that validates against ``schema``."""
    return _Generator(schema, rng).value(schema, 0)


def violating_instance(schema: Any, rng: random.Random) -> Any:
    """A JSON value that does NOT validate against ``schema`` (when the schema allows that).

    Objects lose their first required property, or get a wrongly typed first property;
    anything else becomes a value of a type the schema does not accept.
    """
    gen = _Generator(schema, rng)
    resolved = gen.resolve(schema) if isinstance(schema, dict) else schema
    valid = gen.value(resolved, 0)
    if isinstance(valid, dict) and isinstance(resolved, dict):
        required = [name for name in resolved.get("required", []) if name in valid]
        if required:
            valid.pop(required[0])
            return valid
        props = resolved.get("properties") or {}
        for name, sub in props.items():
            if name in valid:
                valid[name] = _wrong_type_value(gen.resolve(sub))
                return valid
    return _wrong_type_value(resolved)


def _wrong_type_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return {"unexpected": True}
    if "const" in schema:
        return ["not", "the", "const"]
    if "enum" in schema:
        return {"not_in_enum": True}
    accepted = _types_of(schema)
    for candidate, kind in ((12345, "integer"), ("wrong-type", "string"), ([1], "array")):
        if kind not in accepted and not (kind == "integer" and "number" in accepted):
            return candidate
    return {"unexpected": True}


def _types_of(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    return set(_TYPE_ORDER)


class _Generator:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: Any) -> Any:
        """Follow ``$ref`` chains (local ``#/...`` pointers only)."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaError(f"unsupported $ref {ref!r}")
            target: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise SchemaError(f"unresolvable $ref {ref!r}")
                target = target[part]
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings} if siblings and isinstance(target, dict) else target
            seen += 1
            if seen > 50:
                raise SchemaError("$ref cycle")
        return schema

    def value(self, schema: Any, depth: int) -> Any:
        schema = self.resolve(schema)
        if schema is True or schema is None or schema == {}:
            return self._word()
        if schema is False:
            raise SchemaError("schema 'false' accepts nothing")
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(list(schema["enum"]))
        if "allOf" in schema:
            return self.value(self._merge_all_of(schema), depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._one_of(schema, key, depth)
        return self._typed(schema, self._pick_type(schema, depth), depth)

    def _merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part)
            for key, val in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **val}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *val]
                else:
                    merged.setdefault(key, val)
        return merged

    def _one_of(self, schema: dict[str, Any], key: str, depth: int) -> Any:
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        options = list(schema[key])
        if depth >= _MAX_DEPTH:
            options.sort(key=lambda o: 0 if self._is_leaf(o) else 1)
            choice = options[0]
        else:
            choice = self.rng.choice(options)
        branch = self.resolve(choice)
        if base and isinstance(branch, dict):
            branch = {**base, **branch}
        return self.value(branch, depth + 1)

    def _is_leaf(self, schema: Any) -> bool:
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return True
        return not ({"object", "array"} & _types_of(schema)) or "null" in _types_of(schema)

    def _pick_type(self, schema: dict[str, Any], depth: int) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list) and declared:
            if depth >= _MAX_DEPTH:
                for simple in ("null", "boolean", "integer", "number", "string"):
                    if simple in declared:
                        return simple
            return self.rng.choice(list(declared))
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if "minimum" in schema or "maximum" in schema:
            return "number"
        return "string"

    def _typed(self, schema: dict[str, Any], kind: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or depth < 3:
                out[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties", True)
        for name in required:
            if name not in out:
                out[name] = self.value(extra if isinstance(extra, dict) else {}, depth + 1)
        min_props = int(schema.get("minProperties", 0))
        index = 0
        while len(out) < min_props and extra is not False:
            out[f"extra_{index}"] = self.value(extra if isinstance(extra, dict) else {}, depth + 1)
            index += 1
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or [])
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        wanted = max(low, len(prefix)) if depth >= 3 else max(low, min(len(prefix) + 2, 3))
        if high is not None:
            wanted = min(wanted, int(high))
        wanted = max(wanted, low)
        items = schema.get("items", {})
        out: list[Any] = []
        for index in range(wanted):
            sub = prefix[index] if index < len(prefix) else items
            if sub is False:
                break
            unique = bool(schema.get("uniqueItems"))
            out.append(self._fresh(sub, out, depth) if unique else self.value(sub, depth + 1))
        return out

    def _fresh(self, sub: Any, existing: list[Any], depth: int) -> Any:
        candidate = self.value(sub, depth + 1)
        for _ in range(20):
            if candidate not in existing:
                return candidate
            candidate = self.value(sub, depth + 1)
        return candidate

    def _integer(self, schema: dict[str, Any]) -> int:
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = math.ceil(low / step) * step
            count = max(0, (high - first) // step)
            return first + step * self.rng.randint(0, min(count, 50))
        return self.rng.randint(low, high)

    def _number(self, schema: dict[str, Any]) -> float | int:
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0:
            return self._multiple(schema, step)
        low, high = _bounds(schema, integer=False)
        value = round(self.rng.uniform(low, high), 2)
        return min(max(value, low), high)

    def _multiple(self, schema: dict[str, Any], step: float) -> float:
        low, high = _bounds(schema, integer=False)
        first = math.ceil(low / step)
        last = math.floor(high / step)
        k = first if last < first else self.rng.randint(first, min(last, first + 50))
        value = k * step
        return int(value) if float(value).is_integer() else value

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
        if not text:
            text = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 3)))
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        if high is not None and len(text) > int(high):
            text = text[: int(high)]
        if len(text) < low:
            text = text.ljust(low, "x")
        return text

    def _word(self) -> str:
        return self.rng.choice(_WORDS)


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[Any, Any]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
        nudge = 1 if integer else max(abs(ex_low) * 1e-9, 0.01)
        low = ex_low + nudge if low is None else max(low, ex_low + nudge)
    if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
        nudge = 1 if integer else max(abs(ex_high) * 1e-9, 0.01)
        high = ex_high - nudge if high is None else min(high, ex_high - nudge)
    if low is None and high is None:
        low, high = 0, 100
    elif low is None:
        low = high - 100
    elif high is None:
        high = low + 100
    if integer:
        low, high = math.ceil(low), math.floor(high)
    if high < low:
        raise SchemaError("numeric bounds leave no value")
    return low, high
