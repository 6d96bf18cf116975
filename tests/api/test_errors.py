from __future__ import annotations

from conftest import AppClient, expect_error, picture_bytes, upload


async def test_unknown_route_and_method_use_the_error_shape(client: AppClient) -> None:
    expect_error(await client.get("/nope"), 404, "not_found")
    expect_error(await client.get("/v1/transform"), 405, "method_not_allowed")


async def test_validation_errors_use_the_error_shape_and_name_every_field(client: AppClient) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes()), data={"max_side": "x", "quality": "0"})
    message = expect_error(response, 422, "invalid_request")
    fields = response.json()["error"]["fields"]
    assert {field["field"] for field in fields} == {"max_side", "quality"}
    assert all(field["message"] and field["field"] in message for field in fields)


async def test_a_photo_sent_as_text_is_refused_without_being_echoed(client: AppClient) -> None:
    marker = "JPEG-BYTES-" + "x" * 20_000  # what a client that sends the file as a string field puts on the wire
    response = await client.post("/v1/transform", data={"image": marker})
    expect_error(response, 422, "invalid_request")
    assert response.json()["error"]["fields"][0]["field"] == "image"
    assert "JPEG-BYTES" not in response.text and len(response.content) < 1000


async def test_the_document_has_one_error_shape(client: AppClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert not {"HTTPValidationError", "ValidationError"} & set(schema["components"]["schemas"])
    invalid = [
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if status.startswith(("4", "5"))
        and "application/json" in answer.get("content", {})
        and answer["content"]["application/json"]["schema"] != {"$ref": "#/components/schemas/ErrorBody"}
    ]
    assert invalid == []
    assert "fields" in schema["components"]["schemas"]["ErrorDetail"]["properties"]
