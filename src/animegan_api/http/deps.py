"""Typed dependencies: what a route needs before it runs, each refusing with the one error shape.

All are ``async def`` so they run on the event loop: FastAPI sends plain
``def`` dependencies to a thread pool, and admission must not leave the loop.

``Annotated`` aliases keep route signatures short and make the preconditions
visible where the route is declared: a ready registry, an admitted ticket
(held for the whole request, given back however it ends), admin rights.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError

from animegan_api.config import Settings
from animegan_api.http.errors import NOT_READY, SHUTTING_DOWN, ApiError
from animegan_api.http.security import client_address, is_loopback, key_identity, presented_key
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.registry import StyleEntry, StyleRegistry
from animegan_api.runtime.weights import WeightsError
from animegan_api.serving.services import Services
from animegan_api.serving.tickets import Overloaded, Ticket

__all__ = [
    "AdminRights",
    "AdmittedTicket",
    "Caller",
    "CallerDep",
    "ReadyRegistry",
    "RequestTimeout",
    "ServicesDep",
    "acquire",
    "admitted_ticket",
    "check_upload_size",
    "get_services",
    "job_caller",
    "processed_side",
    "ready_registry",
    "require_admin",
    "resolve",
    "resolve_many",
    "single_image",
    "validation_error",
]


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ApiError("not_ready", NOT_READY, {"Retry-After": "5"})
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def ready_registry(services: ServicesDep) -> StyleRegistry:
    """The registry of a service that takes work: not draining, and with a model loaded."""
    if services.draining:
        raise ApiError("shutting_down", SHUTTING_DOWN, {"Retry-After": "1"})
    if not services.ready:
        raise ApiError("not_ready", NOT_READY, {"Retry-After": "5"})
    return services.registry


ReadyRegistry = Annotated[StyleRegistry, Depends(ready_registry)]


async def single_image(request: Request) -> None:
    """Two ``image`` parts would make the choice of picture arbitrary; refuse instead."""
    if len((await request.form()).getlist("image")) > 1:
        raise validation_error("image", "Send exactly one image part", None)


RequestTimeout = Annotated[
    float | None,
    Header(
        alias="X-Request-Timeout",
        gt=0,
        description="Seconds this client will wait for the answer, queue and model included; at most the "
        "service's `request_timeout_s`. A request predicted to finish later is refused at once (503).",
    ),
]


async def admitted_ticket(
    services: ServicesDep, _: ReadyRegistry, timeout: RequestTimeout = None
) -> AsyncIterator[Ticket]:
    """A place in the engine for the whole request, or 503 at once; given back however the request ends."""
    try:
        ticket = services.engine.admit(timeout)
    except Overloaded:
        raise ApiError(
            "overloaded",
            "the service is at capacity; retry shortly",
            {"Retry-After": str(services.settings.retry_after_s)},
        ) from None
    with ticket:
        yield ticket


AdmittedTicket = Annotated[Ticket, Depends(admitted_ticket, scope="function")]


async def require_admin(request: Request, services: ServicesDep) -> None:
    """Admin routes need the admin key when one is set; without one, a loopback client and no API keys."""
    settings = services.settings
    key = settings.admin_key
    if key is None:
        if settings.api_keys or settings.api_keys_file:
            raise ApiError("forbidden", "with API keys on, admin routes need ANIMEGAN_ADMIN_KEY")
        if not is_loopback(client_address(request.scope, request.headers, settings.trust_forwarded_for)):
            raise ApiError("forbidden", "admin routes answer loopback clients only unless ANIMEGAN_ADMIN_KEY is set")
        return
    sent = presented_key(request.headers)
    if not sent:
        raise ApiError(
            "unauthorized",
            "send the admin key as 'Authorization: Bearer <key>' or 'X-API-Key'",
            {"WWW-Authenticate": "Bearer"},
        )
    if not _is_admin_key(settings, sent):
        raise ApiError("forbidden", "wrong admin key")


def _is_admin_key(settings: Settings, presented: str) -> bool:
    """Whether the key sent is the admin key (compared in constant time); False with no admin key set."""
    key = settings.admin_key
    if key is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), key.get_secret_value().encode())


AdminRights = Depends(require_admin)


@dataclass(frozen=True)
class Caller:
    """Whose jobs a request may see: its key's (None with keys off: every job), or all with the admin key."""

    owner: str | None
    admin: bool


async def job_caller(request: Request, services: ServicesDep) -> Caller:
    """The caller of a jobs route: the owner its key makes, and whether it is the admin."""
    settings = services.settings
    presented = presented_key(request.headers)
    keys_on = bool(settings.api_keys or settings.api_keys_file)
    return Caller(key_identity(presented) if keys_on and presented else None, _is_admin_key(settings, presented))


CallerDep = Annotated[Caller, Depends(job_caller)]


def resolve(registry: StyleRegistry, name: str | None) -> StyleEntry:
    entry = registry.lookup(name)
    if entry is None:
        raise ApiError("unknown_style", f"unknown style {name!r}; available styles: {', '.join(registry.names)}")
    if entry.error:
        raise ApiError("style_unavailable", f"style {entry.name!r} cannot be loaded: {entry.error}")
    return entry


def resolve_many(registry: StyleRegistry, names: str | None, limit: int) -> list[StyleEntry]:
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else registry.names[:limit]
    if names and not wanted:  # "," names no style: the client's mistake, not the service being unready
        raise validation_error("styles", "Name at least one style, or leave the field out for all of them", names)
    if len(wanted) > limit:
        raise validation_error("styles", f"At most {limit} styles per comparison", names)
    if not wanted:
        raise ApiError("not_ready", "no style is available", {"Retry-After": "5"})
    return [resolve(registry, name) for name in dict.fromkeys(wanted)]


async def acquire(registry: StyleRegistry, entry: StyleEntry) -> LoadedStyle:
    """The style's loaded model, loading it now if needed; a file that fails makes the style 503."""
    try:
        return await registry.acquire(entry)
    except WeightsError as exc:
        raise ApiError("style_unavailable", f"style {entry.name!r} cannot be loaded: {exc}") from exc


def processed_side(max_side: int | None, settings: Settings) -> int:
    """The request's ``max_side``, defaulted and bounded by the settings (FastAPI's own 422 shape above it)."""
    if max_side is None:
        return settings.default_max_side
    if max_side > settings.max_side_limit:
        raise validation_error("max_side", f"Input should be less than or equal to {settings.max_side_limit}", max_side)
    return max_side


def check_upload_size(size: int | None, settings: Settings) -> None:
    if size is not None and size > settings.max_upload_bytes:
        raise ApiError("upload_too_large", f"the upload is larger than {settings.max_upload_bytes} bytes")


def validation_error(field: str, message: str, value: object) -> RequestValidationError:
    """The same 422 shape FastAPI gives, for limits that come from settings."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}])
