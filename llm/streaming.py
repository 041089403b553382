"""The object :meth:`LLMService.generate_stream` returns: text chunks, then ``.response``.

::

    stream = service.generate_stream(model=..., messages=...)
    async for chunk in stream:
        print(chunk, end="")
    print(stream.response.usage)   # full LLMResponse, once the stream is exhausted
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from llm.exceptions import ProviderConnectionError
from llm.executor import Executed
from llm.types import LLMResponse

Finish = Callable[[Executed], LLMResponse]
OnError = Callable[[BaseException], None]


class ResponseStream:
    """An async iterator of text chunks; ``.response`` is the full answer once it is exhausted.

    ``finish`` turns the executor's final :class:`Executed` into the response (computing
    cost and tracking it); ``on_error`` is told about a failure before it is raised.
    """

    def __init__(
        self, items: AsyncIterator[str | Executed], finish: Finish, on_error: OnError
    ) -> None:
        self._items = items
        self._finish = finish
        self._on_error = on_error
        self._response: LLMResponse | None = None
        self._done = False

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await anext(self._items)
        except StopAsyncIteration:
            self._done = True
            error = ProviderConnectionError("stream ended without a final result")
            self._on_error(error)
            raise error from None
        except BaseException as error:
            self._done = True
            self._on_error(error)
            raise
        if isinstance(item, Executed):
            self._done = True
            await self._close_items()
            try:
                self._response = self._finish(item)
            except BaseException as error:
                self._on_error(error)
                raise
            raise StopAsyncIteration
        return item

    async def _close_items(self) -> None:
        closer = getattr(self._items, "aclose", None)
        if closer is not None:
            await closer()

    @property
    def response(self) -> LLMResponse:
        """The full response; raises RuntimeError until the stream has been read to the end."""
        if self._response is None:
            raise RuntimeError("the stream has not finished: read it to the end first")
        return self._response

    async def aclose(self) -> None:
        """Stop early and release the connection (no response is produced)."""
        self._done = True
        await self._close_items()

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
