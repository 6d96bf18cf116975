"""create_app: nothing loads at import or creation, and the OpenAPI document names every status."""

from __future__ import annotations

from collections.abc import Callable

from animegan_api.config import Settings
from animegan_api.http.app import create_app, services_of
from conftest import AppClient


def test_creating_the_app_loads_nothing(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for())
    assert services_of(app) is None


async def test_openapi_documents_every_status(client: AppClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    transform = schema["paths"]["/v1/transform"]["post"]
    assert {"200", "400", "404", "413", "415", "422", "429", "500", "503", "504"} <= set(transform["responses"])
    assert set(transform["responses"]["200"]["content"]) == {"image/png", "image/jpeg", "image/webp"}
    form = schema["components"]["schemas"][
        transform["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    ]
    assert {"image", "style", "max_side", "keep_size", "format", "quality"} <= set(form["properties"])
    assert {"/v1/styles", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "non-commercial" in schema["info"]["description"]
    assert (await client.get("/docs")).status_code == 200
