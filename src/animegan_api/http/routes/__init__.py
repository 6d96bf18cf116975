"""HTTP routes, one module per resource, registered in the order the API documents them."""

from __future__ import annotations

from fastapi import FastAPI

from animegan_api.http.errors import install_handlers
from animegan_api.http.routes import admin, avatar, demo, health, inference, jobs, limits, styles

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Attach every router, the static files and the error handlers.

    API keys and rate limits are not checked here: the guard middleware
    decides on them before the upload is read, which a route (whose form
    FastAPI parses before calling it) cannot do.
    """
    for module in (inference, avatar, jobs, styles, limits, admin, demo, health):
        app.include_router(module.router)
    app.mount("/static", demo.static_files(), name="static")
    install_handlers(app)
