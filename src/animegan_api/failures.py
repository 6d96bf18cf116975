"""Refusals: what any layer raises when a request cannot be served, before the HTTP layer exists for it.

A refusal carries a stable code (``corrupt_image``, ``overloaded``, ``no_face``
...), a message written for the person who sent the request, and headers such
as ``Retry-After``. Only the HTTP layer knows which status each code means
(:mod:`animegan_api.http.errors` maps them in one table); the CLI prints the
message. So pictures, runtime and serving code never import the web framework.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Refusal"]


class Refusal(Exception):
    """A request the service declines, with its stable code, a human message and extra response headers."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.headers = dict(headers or {})
