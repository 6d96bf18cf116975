"""Route dependencies: the client's deadline header, validated before the request takes a place."""

from __future__ import annotations

import pytest

from conftest import AppClient, picture_bytes, upload


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
async def test_a_bad_request_timeout_header_is_422(client: AppClient, value: str) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes()), headers={"X-Request-Timeout": value})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "X-Request-Timeout"
