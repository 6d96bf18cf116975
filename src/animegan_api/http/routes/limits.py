"""``GET /v1/limits``: the memory budget, what admitted requests hold now, and how large each style may go."""

from __future__ import annotations

from fastapi import APIRouter

from animegan_api.http.deps import ServicesDep
from animegan_api.http.routes.inference import IMAGE_ERRORS
from animegan_api.http.schemas import LimitsResponse, StyleLimits
from animegan_api.runtime.memory import LinearCost, SplitCost, resident_bytes
from animegan_api.serving.services import Services
from animegan_api.serving.sizing import largest_square_side

__all__ = ["limits"]

router = APIRouter(tags=["styles"])


@router.get(
    "/v1/limits",
    summary="The memory budget and the sizes each style can be asked for",
    response_model=LimitsResponse,
    responses={429: IMAGE_ERRORS[429]},
)
async def limits(services: ServicesDep) -> LimitsResponse:
    settings, budget = services.settings, services.engine.budget
    return LimitsResponse(
        memory_budget_bytes=budget.total if budget else None,
        memory_baseline_bytes=budget.baseline if budget else None,
        memory_reserved_bytes=budget.reserved if budget else None,
        resident_bytes=resident_bytes(),
        workers=settings.workers,
        max_queue=settings.max_queue,
        request_timeout_s=settings.request_timeout_s,
        max_side_limit=settings.max_side_limit,
        max_upload_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        styles=[_style(name, services) for name in services.registry.names],
    )


def _style(name: str, services: Services) -> StyleLimits:
    loaded = services.registry.entries[name].loaded
    cost = loaded.cost if loaded else None
    budget = services.engine.budget
    largest = None
    if budget is not None and loaded is not None:
        largest = largest_square_side([loaded], budget.capacity, services.settings.max_side_limit)
    line = cost.large if isinstance(cost, SplitCost) else cost  # the line that large pictures are sized by
    return StyleLimits(
        name=name,
        memory_fixed_bytes=line.fixed if isinstance(line, LinearCost) else None,
        memory_per_pixel=round(line.per_pixel, 1) if isinstance(line, LinearCost) else None,
        memory_at_512_bytes=cost.forward_bytes(512, 512) if cost else None,
        largest_max_side=largest,
    )
