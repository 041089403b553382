"""Emulator directives: ``[[emu:...]]`` markers in the last user text that steer one request.

Supported (see docs/contracts.md): ``fault=429|500|503|529|reset|cut`` (optionally
``,times=N``), ``tokens=N``, ``invalid_json`` (optionally ``,times=N``) and
``latency_ms=N``. Several items may share one marker (``[[emu:tokens=5,latency_ms=10]]``)
or use several markers; ``times`` applies to the ``fault`` or ``invalid_json`` item before
it. Unknown items are ignored. :func:`parse_directives` also returns the text with every
marker removed, which is all the engine ever echoes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER_RE = re.compile(r"\[\[emu:([^\]]*)\]\]")
FAULT_KINDS = ("429", "500", "503", "529", "reset", "cut")


@dataclass(frozen=True)
class Directives:
    fault: str | None = None
    #: Fail only the first N attempts of this exact request (None: every attempt).
    fault_times: int | None = None
    tokens: int | None = None
    invalid_json: bool = False
    invalid_json_times: int | None = None
    latency_ms: float | None = None

    def fault_active(self, attempt: int) -> bool:
        """Whether the fault applies on this attempt (1-based)."""
        return self.fault is not None and (self.fault_times is None or attempt <= self.fault_times)

    def invalid_json_active(self, attempt: int) -> bool:
        """Whether structured output should violate its schema on this attempt."""
        if not self.invalid_json:
            return False
        return self.invalid_json_times is None or attempt <= self.invalid_json_times


def _int(value: str) -> int | None:
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return None


def parse_directives(text: str) -> tuple[Directives, str]:
    """The directives in ``text`` and the text without them (whitespace tidied)."""
    values: dict[str, object] = {}
    for marker in _MARKER_RE.findall(text):
        last: str | None = None
        for item in marker.split(","):
            key, _, raw = item.strip().partition("=")
            key = key.strip().lower()
            if key == "fault" and raw.strip().lower() in FAULT_KINDS:
                values["fault"], last = raw.strip().lower(), "fault"
            elif key == "invalid_json":
                values["invalid_json"], last = True, "invalid_json"
            elif key == "times" and last is not None and _int(raw) is not None:
                values[f"{last}_times"] = _int(raw)
            elif key == "tokens" and _int(raw) is not None:
                values["tokens"] = _int(raw)
            elif key == "latency_ms" and _int(raw) is not None:
                values["latency_ms"] = float(_int(raw) or 0)
    stripped = " ".join(_MARKER_RE.sub(" ", text).split())
    return Directives(**values), stripped  # type: ignore[arg-type]
