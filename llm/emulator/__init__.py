"""Local emulator of the Anthropic, OpenAI and Gemini HTTP APIs.

Run it with ``python -m llm.emulator --port 8000`` or, in code::

    from llm.emulator import Emulator, EmulatorConfig, settings_for

    async with Emulator(EmulatorConfig(rpm=600)) as emu:
        service = LLMService(settings=settings_for(emu.base_url))

The unmodified official SDKs talk to it as to the real APIs (see ``server.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Emulator", "EmulatorConfig", "EmulatorThread", "settings_for", "start_in_thread"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from llm.emulator import server

        return getattr(server, name)
    raise AttributeError(f"module 'llm.emulator' has no attribute {name!r}")
