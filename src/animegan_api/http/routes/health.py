"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (takes work), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from animegan_api.http.deps import ReadyRegistry, ServicesDep
from animegan_api.http.schemas import HealthResponse, ReadyResponse, error_doc

__all__ = ["healthz", "metrics", "readyz"]

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {}}}},
)
async def metrics(services: ServicesDep) -> Response:
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)


@router.get("/healthz", summary="Liveness: the process is up", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: at least one model is loaded and warmed",
    response_model=ReadyResponse,
    responses={503: error_doc("Not ready: starting, shutting down, or no model could be loaded (`not_ready`).")},
)
async def readyz(services: ServicesDep, registry: ReadyRegistry) -> ReadyResponse:
    return ReadyResponse(
        status="ready", styles=registry.names, in_flight=services.engine.running, queued=services.engine.waiting
    )
