from __future__ import annotations

from conftest import AppClient, expect_error


async def test_unknown_route_and_method_use_the_error_shape(client: AppClient) -> None:
    expect_error(await client.get("/nope"), 404, "not_found")
    expect_error(await client.get("/v1/transform"), 405, "method_not_allowed")
