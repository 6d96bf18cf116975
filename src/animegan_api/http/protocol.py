"""uvicorn's httptools protocol with a bound on request heads: their size and how long they may take.

httptools buffers a header until it ends, and uvicorn keeps every header of
a request: ten connections each sending 100 MB of header lines took the
process from 534 to 1494 MiB. And once a connection has sent a byte, nothing
times out a head that never completes, so a client that sends one header
line every few seconds holds its connection forever.

Here a head (request line and headers, up to the blank line) larger than
``max_head_bytes`` is answered ``431`` and the connection closed; one that is
not complete ``head_timeout_s`` after its connection opened (or after the
previous response on a kept-alive connection) is answered ``408`` and closed.
Both answers carry the service's JSON error body. The body of a request is
not counted: the upload cap governs it.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from animegan_api.http import errors

__all__ = ["BoundedHeadProtocol", "bounded_head_protocol"]

log = logging.getLogger(__name__)
_END_OF_HEAD = b"\r\n\r\n"
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class BoundedHeadProtocol(HttpToolsProtocol):
    """An :class:`HttpToolsProtocol` that refuses oversized and stalled request heads."""

    def __init__(self, *args: Any, max_head_bytes: int, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_timeout_s = head_timeout_s
        self._head_bytes = 0
        self._tail = b""
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            seen = self._tail + data
            end = seen.find(_END_OF_HEAD)
            self._head_bytes += len(data) if end < 0 else max(0, end + len(_END_OF_HEAD) - len(self._tail))
            self._tail = seen[-(len(_END_OF_HEAD) - 1) :]
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "request_headers_too_large", f"the request head is over {self.max_head_bytes} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_head()

    def _expect_head(self) -> None:
        """A new request head may start now; it has ``head_timeout_s`` to complete."""
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # an idle kept-alive connection: close it quietly, as uvicorn would
            self.transport.close()
            return
        self._refuse(408, "head_timeout", f"the request head did not complete within {self.head_timeout_s:g} s")

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, code: str, message: str) -> None:
        log.warning("%s from %s: %s", code, self.client, message)
        body = errors.body(code, message)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, _REASONS[status], len(body)) + body)
        self.transport.close()
        self._in_head = False
        self._stop_head_timer()


def bounded_head_protocol(max_head_bytes: int, head_timeout_s: float) -> Any:
    """The protocol class uvicorn's ``Config(http=...)`` takes, with these bounds."""
    return partial(BoundedHeadProtocol, max_head_bytes=max_head_bytes, head_timeout_s=head_timeout_s)
