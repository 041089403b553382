"""The emulator's HTTP server: one aiohttp app serving all three provider APIs on loopback.

Routes (every wire module is imported defensively: a missing one just leaves its routes
out): Anthropic ``POST /v1/messages`` and ``/v1/messages/count_tokens``; OpenAI
``POST /v1/chat/completions`` and ``/v1/responses``; Gemini, under ``/v1/`` and
``/v1beta/``, ``POST models/{model}:generateContent|streamGenerateContent|countTokens`` and
``cachedContents`` (create, list, get, patch, delete); the three batch APIs
(:mod:`llm.emulator.batch_routes`). ``GET /_emulator/stats`` (counters, plus the admission
timeline: admissions, 429s, the share of the enforced rate used and the most calls in flight
at once) and ``POST /_emulator/reset`` are for tests and benchmarks. The server only moves
bytes: the
wire modules translate and the :class:`~llm.emulator.engine.Engine` decides.

Public API: :class:`EmulatorConfig`, :class:`Emulator` (async context manager),
:func:`start_in_thread` (an :class:`EmulatorThread` for sync code), :func:`settings_for`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

from aiohttp import web

from llm.config import Settings
from llm.emulator.engine import ConnectionFault, EmulatorConfig, Engine, Outcome
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SSE = "text/event-stream; charset=utf-8"
_ID_HEADERS = {"anthropic": "request-id", "openai": "x-request-id"}
_GEMINI_VERSIONS = ("v1", "v1beta")


def _load_wire(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"llm.emulator.{name}")
    except ImportError as exc:
        log.warning("emulator: %s not available (%s); its routes are off", name, exc)
        return None


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"type": "not_found", "message": message}}, status=status)


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise EmuError("invalid_request", "The request body is not valid JSON.") from None


def _drop(request: web.Request) -> None:
    """Close the connection abruptly (the client sees a reset or a truncated body)."""
    if request.transport is not None:
        request.transport.abort()


def parse_duration_s(value: Any, default: float = 3600.0) -> float:
    """Seconds from a protobuf duration string like ``"300s"`` or ``"1.5s"``."""
    if value is None:
        return default
    text = str(value).strip()
    try:
        return float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        raise EmuError("invalid_request", f"Invalid value for ttl: {text!r}") from None


def _ttl_from_patch(body: Mapping[str, Any]) -> float:
    if "ttl" in body:
        return parse_duration_s(body["ttl"])
    expire = body.get("expireTime") or body.get("expire_time")
    if expire:
        when = dt.datetime.fromisoformat(str(expire).replace("Z", "+00:00"))
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    raise EmuError("invalid_request", "Either ttl or expireTime must be set.")


class EmulatorApp:
    """Routes HTTP to wire modules and the engine; owns no state besides the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.anthropic = _load_wire("anthropic_wire")
        self.openai = _load_wire("openai_wire")
        self.gemini = _load_wire("gemini_wire")

    # ------------------------------------------------------------------- app setup
    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        add = app.router.add_route
        add("GET", "/_emulator/stats", self._stats)
        add("POST", "/_emulator/reset", self._reset)
        _add_batch_routes(app, self)  # provider batch APIs (llm/emulator/batch_routes.py)
        if self.anthropic is not None:
            add("POST", "/v1/messages", self._anthropic_messages)
            add("POST", "/v1/messages/count_tokens", self._anthropic_count)
        if self.openai is not None:
            add("POST", "/v1/chat/completions", self._openai_chat)
            add("POST", "/v1/responses", self._openai_responses)
        if self.gemini is not None:
            add("POST", "/{version}/models/{tail:.+}", self._gemini_model_call)
            add("POST", "/{version}/cachedContents", self._gemini_cache_create)
            add("GET", "/{version}/cachedContents", self._gemini_cache_list)
            for method in ("GET", "PATCH", "DELETE"):
                add(method, "/{version}/cachedContents/{cache_id}", self._gemini_cache_item)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                response = _json_error(
                    exc.status, f"Unknown route: {request.method} {request.path}"
                )
            else:
                raise
        self.engine.stats.record_status(response.status)
        return response

    async def _stats(self, request: web.Request) -> web.Response:
        """Counters; ``?per_second=1`` adds admissions per second after the first request
        (``&bin_s=0.1``: per tenth of a second instead)."""
        stats = self.engine.stats
        body = stats.as_dict()
        if request.query.get("per_second"):
            bin_s = float(request.query.get("bin_s", "1"))
            if not 0 < bin_s <= 3600:
                raise web.HTTPBadRequest(text="bin_s must be in (0, 3600]")
            body["timeline"]["per_second"] = stats.timeline.per_second(bin_s)
        return web.json_response(body)

    async def _reset(self, request: web.Request) -> web.Response:
        self.engine.reset()
        return web.json_response({"ok": True})

    # --------------------------------------------------------------- common flow
    def _error(
        self, wire: ModuleType, provider: str, err: EmuError, **context: Any
    ) -> web.Response:
        status, body, headers = wire.render_error(err, **context)
        id_header = _ID_HEADERS.get(provider)
        if id_header and err.request_id and id_header not in headers:
            headers = {**headers, id_header: err.request_id}
        return web.json_response(body, status=status, headers=headers)

    def _success_headers(self, wire: ModuleType, provider: str, res: EmuResult) -> dict[str, str]:
        headers: dict[str, str] = {}
        if provider in _ID_HEADERS:
            headers[_ID_HEADERS[provider]] = res.request_id
            headers.update(wire.limit_headers(res.limits))
        return headers

    async def _generate(
        self,
        request: web.Request,
        wire: ModuleType,
        provider: str,
        parse: Callable[[Any], EmuRequest],
        render: Callable[[EmuRequest, EmuResult], dict[str, Any]],
        stream: Callable[[EmuRequest, EmuResult], list[bytes]],
        **context: Any,
    ) -> web.StreamResponse:
        """``context`` (Gemini: the model) words errors as the provider does."""
        key = wire.api_key_from(request.headers, request.query)
        try:
            req = parse(await _read_json(request))
            outcome = self.engine.prepare(req, key)
        except EmuError as err:
            return self._error(
                wire, provider, self.engine.finish_error(err, key, provider=provider), **context
            )
        except ConnectionFault as fault:
            return self._fault(request, fault.mode)
        except Exception:  # a bug here must still look like a provider 500 to the client
            log.exception("emulator: unexpected error")
            err = EmuError("server_error", "Internal server error")
            return self._error(
                wire, provider, self.engine.finish_error(err, key, provider=provider), **context
            )
        timeline = self.engine.stats.timeline
        timeline.started()
        try:
            if req.stream:
                frames = stream(req, outcome.result)
                return await self._stream(request, wire, provider, frames, outcome)
            if outcome.cut:
                return self._fault(request, "cut")
            if outcome.duration_s > 0:
                await asyncio.sleep(outcome.duration_s)
            body = render(req, outcome.result)
            return web.json_response(
                body, headers=self._success_headers(wire, provider, outcome.result)
            )
        finally:
            timeline.finished()

    def _fault(self, request: web.Request, mode: str) -> web.Response:
        self.engine.stats.by_status[mode] += 1
        _drop(request)
        return web.Response(status=500)

    async def _stream(
        self,
        request: web.Request,
        wire: ModuleType,
        provider: str,
        frames: list[bytes],
        outcome: Outcome,
    ) -> web.StreamResponse:
        headers = self._success_headers(wire, provider, outcome.result)
        headers.update({"content-type": _SSE, "cache-control": "no-cache"})
        response = web.StreamResponse(status=200, headers=headers)
        if outcome.headers_s > 0:
            await asyncio.sleep(outcome.headers_s)
        await response.prepare(request)  # the headers leave (rate-limit headers with them)
        if outcome.ttft_s > outcome.headers_s:
            await asyncio.sleep(outcome.ttft_s - outcome.headers_s)
        send = frames[: max(1, len(frames) // 2)] if outcome.cut else frames
        gap = outcome.result.output_tokens * outcome.seconds_per_token / max(1, len(frames) - 1)
        for index, frame in enumerate(send):
            if index and gap > 0:
                await asyncio.sleep(gap)
            await response.write(frame)
        if outcome.cut:
            self.engine.stats.by_status["cut"] += 1
            await asyncio.sleep(0.01)
            _drop(request)
            return response
        await response.write_eof()
        return response

    # ----------------------------------------------------------------- Anthropic
    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        wire = self.anthropic
        assert wire is not None
        return await self._generate(
            request,
            wire,
            "anthropic",
            lambda body: wire.parse_messages(body, request.headers),
            wire.render_message,
            wire.stream_message,
        )

    async def _anthropic_count(self, request: web.Request) -> web.Response:
        wire = self.anthropic
        assert wire is not None
        key = wire.api_key_from(request.headers, request.query)
        try:
            req = wire.parse_count_tokens(await _read_json(request), request.headers)
            self.engine.check_request(req, key)
        except EmuError as err:
            return self._error(
                wire, "anthropic", self.engine.finish_error(err, key, provider="anthropic")
            )
        return web.json_response(wire.render_count_tokens(req))

    # -------------------------------------------------------------------- OpenAI
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        wire = self.openai
        assert wire is not None
        return await self._generate(
            request,
            wire,
            "openai",
            lambda body: wire.parse_chat(body, request.headers),
            wire.render_chat,
            wire.stream_chat,
        )

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        wire = self.openai
        assert wire is not None
        return await self._generate(
            request,
            wire,
            "openai",
            lambda body: wire.parse_responses(body, request.headers),
            wire.render_responses,
            wire.stream_responses,
        )

    # -------------------------------------------------------------------- Gemini
    async def _gemini_model_call(self, request: web.Request) -> web.StreamResponse:
        wire = self.gemini
        assert wire is not None
        model, _, method = request.match_info["tail"].rpartition(":")
        if request.match_info["version"] not in _GEMINI_VERSIONS or not model:
            return _json_error(404, f"Unknown route: {request.path}")
        if method == "countTokens":
            return await self._gemini_count(request, wire, model)
        if method not in ("generateContent", "streamGenerateContent"):
            return _json_error(404, f"Unknown method: {method}")
        streaming = method == "streamGenerateContent"

        def parse(body: Any) -> EmuRequest:
            req = wire.parse_generate(body, model, request.headers)
            return req if req.stream == streaming else _with_stream(req, streaming)

        return await self._generate(
            request, wire, "google", parse, wire.render_generate, wire.stream_generate, model=model
        )

    async def _gemini_count(
        self, request: web.Request, wire: ModuleType, model: str
    ) -> web.Response:
        key = wire.api_key_from(request.headers, request.query)
        try:
            req = wire.parse_count_tokens(await _read_json(request), model, request.headers)
            self.engine.check_request(req, key)
            total = self.engine.count(req, key)
        except EmuError as err:
            return self._error(wire, "google", self.engine.finish_error(err, key))
        cached = total - sum(seg.tokens for seg in req.segments)
        return web.json_response(wire.render_count_tokens(req, cached))

    async def _gemini_cache_call(
        self, request: web.Request, action: Callable[[str | None, Any], Any]
    ) -> web.Response:
        wire = self.gemini
        assert wire is not None
        if request.match_info["version"] not in _GEMINI_VERSIONS:
            return _json_error(404, f"Unknown route: {request.path}")
        key = wire.api_key_from(request.headers, request.query)
        try:
            body = await _read_json(request) if request.method in ("POST", "PATCH") else {}
            return web.json_response(action(key, body))
        except EmuError as err:
            return self._error(wire, "google", self.engine.finish_error(err, key))

    async def _gemini_cache_create(self, request: web.Request) -> web.Response:
        wire = self.gemini
        assert wire is not None

        def create(key: str | None, body: Any) -> dict[str, Any]:
            model, segments, ttl_s, display_name = wire.parse_cached_content(body)
            info = self.engine.create_cached_content(key, model, segments, ttl_s, display_name)
            return wire.render_cached_content(info)

        return await self._gemini_cache_call(request, create)

    async def _gemini_cache_list(self, request: web.Request) -> web.Response:
        wire = self.gemini
        assert wire is not None

        def listing(key: str | None, body: Any) -> dict[str, Any]:
            items = self.engine.list_cached_contents(key)
            return (
                {"cachedContents": [wire.render_cached_content(i) for i in items]} if items else {}
            )

        return await self._gemini_cache_call(request, listing)

    async def _gemini_cache_item(self, request: web.Request) -> web.Response:
        wire = self.gemini
        assert wire is not None
        name = "cachedContents/" + request.match_info["cache_id"]

        def act(key: str | None, body: Any) -> dict[str, Any]:
            if request.method == "DELETE":
                self.engine.delete_cached_content(key, name)
                return {}
            if request.method == "PATCH":
                ttl_s = _ttl_from_patch(body if isinstance(body, dict) else {})
                return wire.render_cached_content(
                    self.engine.update_cached_content_ttl(key, name, ttl_s)
                )
            return wire.render_cached_content(self.engine.get_cached_content(key, name))

        return await self._gemini_cache_call(request, act)


def _add_batch_routes(app: web.Application, emu: EmulatorApp) -> None:
    batch = _load_wire("batch_routes")
    if batch is not None:
        wires = {"anthropic": emu.anthropic, "openai": emu.openai, "google": emu.gemini}
        batch.add_batch_routes(app, emu.engine, wires)


def _with_stream(req: EmuRequest, stream: bool) -> EmuRequest:
    return replace(req, stream=stream)


# ---------------------------------------------------------------------- public API
class Emulator:
    """``async with Emulator(config) as emu:`` serves on ``emu.base_url`` until exit."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, engine: Engine | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        self.engine = engine or Engine(self.config)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.config.host}:{self._port}"

    async def start(self) -> None:
        app = EmulatorApp(self.engine).build()
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.TCPSite(runner, self.config.host, self.config.port).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EmulatorThread:
    """An emulator on its own event loop in a daemon thread (for sync code and tests).

    ``engine`` as for :class:`Emulator` (e.g. one with an injected wall clock).
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, engine: Engine | None = None
    ) -> None:
        self.emulator = Emulator(config, engine=engine)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llm-emulator", daemon=True)

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def engine(self) -> Engine:
        return self.emulator.engine

    def start(self, timeout: float = 10.0) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the emulator failed to start") from self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.emulator.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self.emulator.stop())
            self._loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to finish."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


def start_in_thread(
    config: EmulatorConfig | None = None, *, engine: Engine | None = None
) -> EmulatorThread:
    """Start an emulator in a daemon thread; returns once it accepts connections."""
    return EmulatorThread(config, engine=engine).start()


def settings_for(
    base_url: str, api_key: str = "emulator-key", base: Settings | None = None
) -> Settings:
    """Settings pointing all three providers at one emulator, with ``api_key`` for each."""
    root = base_url.rstrip("/")
    return (base or Settings()).with_overrides(
        anthropic_base_url=root,
        openai_base_url=root + "/v1",
        google_base_url=root,
        anthropic_api_key=api_key,
        openai_api_key=api_key,
        google_api_key=api_key,
    )


__all__ = [
    "Emulator",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorThread",
    "settings_for",
    "start_in_thread",
]
