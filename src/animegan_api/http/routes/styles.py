"""``GET /v1/styles``: what each style is, where it came from, and whether it can serve."""

from __future__ import annotations

from fastapi import APIRouter

from animegan_api.http.deps import ServicesDep
from animegan_api.http.routes.inference import IMAGE_ERRORS
from animegan_api.http.schemas import StyleInfo, StylesResponse, UnavailableFile
from animegan_api.runtime.registry import StyleEntry, StyleRegistry

__all__ = ["describe", "list_styles"]

router = APIRouter(tags=["styles"])


@router.get(
    "/v1/styles",
    summary="List the styles this service offers",
    response_model=StylesResponse,
    responses={429: IMAGE_ERRORS[429]},
)
async def list_styles(services: ServicesDep) -> StylesResponse:
    return describe(services.registry)


def describe(registry: StyleRegistry) -> StylesResponse:
    return StylesResponse(
        styles=[_style_info(entry, entry.name == registry.default_name) for entry in registry.entries.values()],
        unavailable=[UnavailableFile(name=f.name, file=f.path.name, reason=f.reason) for f in registry.failed_files]
        + [
            UnavailableFile(name=e.name, file=e.file.path.name, reason=e.error)
            for e in registry.entries.values()
            if e.error
        ],
    )


def _style_info(entry: StyleEntry, default: bool) -> StyleInfo:
    spec, loaded = entry.spec, entry.loaded
    return StyleInfo(
        name=entry.name,
        display_name=spec.display_name,
        architecture=spec.architecture,
        format=spec.format,
        formats=entry.formats,
        file=entry.file.path.name,
        layout=spec.layout,
        upsample=spec.upsample if spec.format == "torch" else None,
        size_multiple=spec.size_multiple,
        preprocess=spec.preprocess,
        recommended_max_side=spec.recommended_max_side,
        max_batch=spec.max_batch,
        parameters=loaded.parameters if loaded else None,
        weights_bytes=entry.file.path.stat().st_size if entry.file.path.exists() else 0,
        memory_bytes=loaded.memory_bytes if loaded else None,
        precision=loaded.precision if loaded else None,
        precision_note=loaded.precision_note if loaded else None,
        runtime=loaded.runtime if loaded else None,
        runtime_seconds=loaded.runtime_seconds if loaded else None,
        runtime_note=loaded.runtime_note if loaded else None,
        loaded=loaded is not None,
        available=entry.error is None,
        reason=entry.error,
        license=spec.license,
        source=spec.source,
        url=spec.url,
        sha256=spec.sha256,
        default=default,
    )
