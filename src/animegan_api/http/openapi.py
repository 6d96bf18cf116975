"""The OpenAPI document as client generators need it: files typed as files, headers declared, one error shape.

FastAPI writes uploads as OpenAPI 3.1 ``contentMediaType`` alone, leaves the
picture responses without a schema, documents response headers only where a
route spells them out, and adds its own ``HTTPValidationError`` to every
route with parameters, while the service answers validation errors with its
own body. Generators (openapi-python-client, openapi-typescript) then see a
photo as a ``str`` and a picture as ``unknown``. This module rewrites the
generated document once, so it says what the service sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from animegan_api.serving.plans import FACE_HEADER_NAMES

__all__ = ["install_openapi"]

_FASTAPI_422 = ("HTTPValidationError", "ValidationError")
_ERROR_REF = "#/components/schemas/ErrorBody"
_BINARY = {"type": "string", "format": "binary"}
_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}

_HEADERS: dict[str, tuple[str, dict[str, str]]] = {
    "X-Request-ID": ("The request's id (the client's own when it sent a valid one); it is in the logs too.", _STRING),
    "Retry-After": ("Seconds to wait before trying again; on a job still queued or running, before polling.", _INTEGER),
    "Server-Timing": ("Milliseconds spent in decode, queue, inference and encode.", _STRING),
    "X-Style": ("The style that made the picture.", _STRING),
    "X-Styles": ("The styles of the sheet's tiles, comma-separated, in order.", _STRING),
    "X-Cache": ("`hit` when the result cache answered, `miss` when the model ran; absent with the cache off.", _STRING),
    "X-Faces-Found": ("How many faces the photo has.", _INTEGER),
    "X-Face-Boxes": ("Every face as `left,top,width,height`, `;`-separated, in reading order.", _STRING),
    "X-Face-Index": ("The index (or indices) of the face(s) framed.", _STRING),
    "X-Face-Box": ("The framed face(s) as `left,top,width,height`.", _STRING),
    "X-Face-Roll": ("Degrees the square was turned to level the eyes.", _STRING),
    "Location": ("The job's URL.", _STRING),
}
_SUCCESS_HEADERS = {
    ("/v1/transform", "post"): ("Server-Timing", "X-Style", "X-Cache"),
    ("/v1/compare", "post"): ("Server-Timing", "X-Styles", "X-Cache"),
    ("/v1/avatar", "post"): ("Server-Timing", "X-Style", *FACE_HEADER_NAMES),
    ("/v1/jobs", "post"): ("Location", "Retry-After"),
    ("/v1/jobs/{job_id}", "get"): ("Location", "Retry-After"),
    ("/v1/jobs/{job_id}", "delete"): ("Location", "Retry-After"),
}
_RETRY_STATUSES = ("429", "503", "507")
# Sent on every answer the header is declared for; the rest only sometimes (X-Cache without the cache, ...).
_ALWAYS = frozenset(
    {"X-Request-ID", "Server-Timing", "X-Style", "X-Styles", "X-Faces-Found", "X-Face-Boxes", "Location"}
)
_STYLE_FIELDS = ("style", "styles")


def install_openapi(app: FastAPI, default_style: str | None) -> None:
    """Make ``app.openapi()`` return the rewritten document (FastAPI caches it; the rewrite runs once).

    ``default_style`` becomes the example of the style fields, so "Try it out" on ``/docs`` names a style
    this service has; without one the examples go and the service's own default applies.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        if first:
            _rewrite(schema, default_style)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _rewrite(schema: dict[str, Any], default_style: str | None) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, form in components.items():
        _binary_uploads(form)
        if name.startswith("Body_"):
            _style_examples(form, default_style)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            for status, answer in operation.get("responses", {}).items():
                _typed_bodies(answer)
                _one_error_shape(answer, status)
                _declare_headers(answer, status, _SUCCESS_HEADERS.get((path, method), ()))
    for name in _FASTAPI_422:
        components.pop(name, None)


def _binary_uploads(form: dict[str, Any]) -> None:
    """A file field (``contentMediaType``) is also ``format: binary``, which generators read as a file."""
    for field in form.get("properties", {}).values():
        for variant in [field, *field.get("anyOf", []), field.get("items", {})]:
            if "contentMediaType" in variant:
                variant["format"] = "binary"


def _style_examples(form: dict[str, Any], default_style: str | None) -> None:
    for name in _STYLE_FIELDS:
        field = form.get("properties", {}).get(name)
        if field is None:
            continue
        if default_style:
            field["examples"] = [default_style]
        else:
            field.pop("examples", None)


def _typed_bodies(answer: dict[str, Any]) -> None:
    """Pictures, videos and archives are binary strings; event streams and metrics text."""
    for media_type, content in answer.get("content", {}).items():
        if "schema" not in content:
            content["schema"] = dict(_STRING if media_type.startswith("text/") else _BINARY)


def _one_error_shape(answer: dict[str, Any], status: str) -> None:
    content = answer.get("content", {}).get("application/json", {})
    if status == "422" and content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        answer["description"] = "A field, query parameter or header out of range (`invalid_request`)."
        content["schema"] = {"$ref": _ERROR_REF}


def _declare_headers(answer: dict[str, Any], status: str, success: tuple[str, ...]) -> None:
    names = ["X-Request-ID"]
    if status in _RETRY_STATUSES:
        names.append("Retry-After")
    if status.startswith("2") and status != "204":
        names.extend(name for name in success if name not in names)
    headers = answer.setdefault("headers", {})
    for name in names:
        description, kind = _HEADERS[name]
        always = name in _ALWAYS or (name == "Retry-After" and status == "429")
        headers.setdefault(name, {"description": description, "required": always, "schema": dict(kind)})
