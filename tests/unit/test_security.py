"""Who is calling: addresses, presented keys, key comparison and loopback, as the middleware and deps read them."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from animegan_api.http.security import client_address, is_loopback, matches_any, presented_key


def test_the_forwarded_address_counts_only_behind_a_trusted_proxy() -> None:
    scope = {"client": ("10.0.0.9", 5555)}
    headers = Headers({"x-forwarded-for": "203.0.113.7, 10.0.0.1"})
    assert client_address(scope, headers, trust_forwarded_for=False) == "10.0.0.9"
    assert client_address(scope, headers, trust_forwarded_for=True) == "203.0.113.7"
    assert client_address({}, Headers({}), trust_forwarded_for=True) == "unknown"


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": " k1 "}, "k1"),
        ({"authorization": "Bearer k2"}, "k2"),
        ({"authorization": "bearer  k3 "}, "k3"),
        ({"authorization": "Basic dXNlcjpwdw=="}, ""),
        ({}, ""),
    ],
)
def test_a_key_is_read_from_x_api_key_or_a_bearer_token(headers: dict[str, str], key: str) -> None:
    assert presented_key(Headers(headers)) == key


def test_keys_match_exactly() -> None:
    keys = [b"alpha", b"beta"]
    assert matches_any("beta", keys)
    assert not matches_any("bet", keys) and not matches_any("betaa", keys) and not matches_any("", keys)


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("10.1.2.3", False), ("x", False)])
def test_loopback_is_an_address_fact_not_a_name(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
