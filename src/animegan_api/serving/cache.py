"""Finished pictures kept in memory, so the same upload with the same parameters skips the model.

Frontends resend the same photo more than one would think: a retry after a
dropped connection, a user toggling the output format and back, a demo page
reloaded. A hit costs a SHA-256 of the upload and a dictionary lookup instead
of seconds of CPU. The cache is bounded in bytes (not entries: one picture may
weigh a few kilobytes or a few megabytes) and forgets the least recently used.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CachedResult", "ResultCache", "cache_key"]


@dataclass(frozen=True)
class CachedResult:
    """An encoded picture and the headers that describe it."""

    body: bytes
    media_type: str
    styles: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()


class ResultCache:
    """An LRU of :class:`CachedResult` whose bodies together stay within ``max_bytes``.

    Used from the event loop only, so it needs no lock. A result larger than
    ``max_bytes / 8`` is not stored: one huge picture must not flush the rest.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._entries: OrderedDict[str, CachedResult] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedResult | None:
        result = self._entries.get(key)
        if result is not None:
            self._entries.move_to_end(key)
        return result

    def put(self, key: str, result: CachedResult) -> None:
        if not self.enabled or len(result.body) > self.max_bytes // 8:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size_bytes -= len(previous.body)
        self._entries[key] = result
        self.size_bytes += len(result.body)
        while self.size_bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= len(evicted.body)

    def clear(self) -> None:
        """Forget everything: after a reload the same style name may be a different model."""
        self._entries.clear()
        self.size_bytes = 0


def cache_key(data: bytes, **params: object) -> str:
    """SHA-256 of the upload plus every parameter that changes the output, in a fixed order."""
    digest = hashlib.sha256(data).hexdigest()
    return digest + "".join(f";{name}={params[name]!r}" for name in sorted(params))
