"""Who is calling: the client's address, the key it presented, and constant-time key checks.

Shared by the guard middleware (API keys, rate-limit identity) and the admin
dependency, so both read the same headers the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["client_address", "is_loopback", "key_identity", "matches_any", "presented_key"]


def client_address(scope: Scope, headers: Headers, trust_forwarded_for: bool) -> str:
    """The client's address: the first X-Forwarded-For hop only when a trusted proxy sets it."""
    if trust_forwarded_for and (forwarded := headers.get("x-forwarded-for")):
        return forwarded.split(",")[0].strip()
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"


def presented_key(headers: Headers) -> str:
    """The key a client sent, as ``X-API-Key`` or ``Authorization: Bearer``; empty if none."""
    if key := headers.get("x-api-key", "").strip():
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def key_identity(presented: str) -> str:
    """Who a key is, without the key: for rate limits and for the owner of a job."""
    return "key:" + hashlib.sha256(presented.encode()).hexdigest()[:16]


def matches_any(presented: str, keys: list[bytes]) -> bool:
    """Compare against every key without an early exit, so timing does not reveal which prefix matched."""
    candidate = presented.encode()
    return any([hmac.compare_digest(candidate, key) for key in keys])


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
