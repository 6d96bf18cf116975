"""The OpenAPI document as clients need it: one error shape, with request validation in it.

FastAPI documents a ``422`` with its own ``HTTPValidationError`` on every
route that takes parameters, but the service answers validation errors with
its own body (:func:`~animegan_api.http.errors.install_handlers`). The
document says what is sent: every ``422`` is the ``ErrorBody`` component.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["install_openapi"]

_FASTAPI_422 = ("HTTPValidationError", "ValidationError")
_ERROR_REF = "#/components/schemas/ErrorBody"


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with FastAPI's validation schemas replaced by ours."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call: the rewrite below runs once
        if any(name in schema.get("components", {}).get("schemas", {}) for name in _FASTAPI_422):
            _one_error_shape(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _one_error_shape(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is None:
                continue
            content = answer.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                answer["description"] = "A field, query parameter or header out of range (`invalid_request`)."
                content["schema"] = {"$ref": _ERROR_REF}
    components = schema.get("components", {}).get("schemas", {})
    for name in _FASTAPI_422:
        components.pop(name, None)
