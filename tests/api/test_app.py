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


async def test_openapi_types_files_as_binary_and_declares_headers(client: AppClient) -> None:
    """What client generators need: a file field and a picture are binary strings; headers have types."""
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    for path, field in (("/v1/transform", "image"), ("/v1/avatar", "image"), ("/v1/jobs", "file")):
        form = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        assert components[form.split("/")[-1]]["properties"][field]["format"] == "binary", path
    binary = {"type": "string", "format": "binary"}
    for path in ("/v1/transform", "/v1/compare", "/v1/avatar"):
        answer = schema["paths"][path]["post"]["responses"]["200"]
        assert all(content["schema"] == binary for content in answer["content"].values()), path
        assert {"X-Request-ID", "Server-Timing"} <= set(answer["headers"])
        assert answer["headers"]["X-Request-ID"]["schema"] == {"type": "string"}
    avatar = schema["paths"]["/v1/avatar"]["post"]["responses"]["200"]["headers"]
    assert avatar["X-Faces-Found"]["schema"] == {"type": "integer"} and "X-Style" in avatar
    transform = schema["paths"]["/v1/transform"]["post"]["responses"]
    assert {"X-Style", "X-Cache"} <= set(transform["200"]["headers"])
    assert transform["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    submitted = schema["paths"]["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    assert submitted["Location"]["required"] and not submitted["Retry-After"]["required"]
    assert schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["headers"]["Location"]["required"]
    assert transform["200"]["headers"]["X-Style"]["required"] and not transform["200"]["headers"]["X-Cache"]["required"]
    result = schema["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]
    assert result["video/mp4"]["schema"] == binary


def test_style_examples_name_the_default_style(settings_for: Callable[..., Settings]) -> None:
    """Swagger UI fills "Try it out" with the example: it must be a style this service has, or none at all."""
    for default, expected in (("tiny_style", ["tiny_style"]), (None, None)):
        components = create_app(settings_for(default_style=default)).openapi()["components"]["schemas"]
        assert components["Body_transform_v1_transform_post"]["properties"]["style"].get("examples") == expected
        assert components["Body_compare_v1_compare_post"]["properties"]["styles"].get("examples") == expected
