"""``POST /v1/admin/reload``: rescan the weights folder without dropping requests in flight."""

from __future__ import annotations

from fastapi import APIRouter

from animegan_api.http.deps import AdminRights, ServicesDep
from animegan_api.http.routes.inference import IMAGE_ERRORS
from animegan_api.http.routes.styles import describe
from animegan_api.http.schemas import StylesResponse, error_doc

__all__ = ["reload"]

router = APIRouter(tags=["admin"])


@router.post(
    "/v1/admin/reload",
    summary="Rescan the weights folder without dropping requests in flight (also on SIGHUP)",
    response_model=StylesResponse,
    responses={
        401: error_doc("An admin key is configured and none was sent (`unauthorized`)."),
        403: error_doc("Wrong admin key, or no key configured and the client is not on loopback (`forbidden`)."),
        429: IMAGE_ERRORS[429],
    },
    dependencies=[AdminRights],
)
async def reload(services: ServicesDep) -> StylesResponse:
    return describe(await services.reload())
