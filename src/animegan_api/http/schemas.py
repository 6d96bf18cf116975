"""The JSON bodies of the HTTP API, with the examples shown in /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "FieldError",
    "HealthResponse",
    "LimitsResponse",
    "ReadyResponse",
    "StyleInfo",
    "StyleLimits",
    "StylesResponse",
    "UnavailableFile",
    "error_doc",
]


class FieldError(BaseModel):
    field: str = Field(examples=["max_side"], description="The form field, query parameter or header.")
    message: str = Field(examples=["Input should be less than or equal to 4096"])


class ErrorDetail(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"code": "unsupported_image", "message": "not a supported picture"}}
    )

    code: str = Field(examples=["unsupported_image"])
    message: str = Field(examples=["not a supported picture; accepted formats: JPEG, PNG, WebP, BMP, TIFF, GIF"])
    fields: list[FieldError] | None = Field(
        None, description="`invalid_request` only: each field and what is wrong with it (never the value sent)."
    )


class ErrorBody(BaseModel):
    """The body of every error response, request validation (`invalid_request`, 422) included."""

    error: ErrorDetail


class StyleInfo(BaseModel):
    name: str = Field(examples=["animeganv2_hayao"])
    display_name: str | None = Field(examples=["Hayao (AnimeGANv2)"])
    architecture: str | None = Field(examples=["animeganv2"], description="Known once loaded if no sidecar says it.")
    format: str = Field(examples=["torch"], description="Format of the file that runs this style.")
    formats: list[str] = Field(examples=[["onnx", "torch"]], description="Every format this style exists in.")
    file: str = Field(examples=["animeganv2_hayao.pt"])
    layout: str | None = Field(examples=["NCHW"])
    upsample: str | None = Field(examples=["tf_legacy"], description="AnimeGANv2 PyTorch files only.")
    size_multiple: int | None = Field(examples=[4])
    preprocess: str = Field(examples=["full"])
    recommended_max_side: int | None = Field(examples=[1024])
    max_batch: int | None = Field(examples=[None])
    parameters: int | None = Field(examples=[2143552], description="PyTorch files only.")
    weights_bytes: int = Field(examples=[8603303])
    memory_bytes: int | None = Field(
        examples=[41943040], description="Resident memory the load added; null until loaded."
    )
    precision: str | None = Field(examples=["fp32"], description="fp32, bf16 or int8 as loaded; null until loaded.")
    runtime: str | None = Field(
        examples=["openvino"], description="What runs the forward: pytorch, onnxruntime or openvino; null until loaded."
    )
    runtime_seconds: dict[str, float] | None = Field(
        examples=[{"onnxruntime": 0.172, "openvino": 0.139}],
        description="With `ANIMEGAN_ONNX_RUNTIME=auto`: each runtime's warm forward on the warm-up picture at load, "
        "the faster one serving.",
    )
    runtime_note: str | None = Field(
        examples=[None],
        description="Why `auto` serves this style on ONNX Runtime or PyTorch although OpenVINO was faster: its held "
        "buffers left the memory budget too little room for the largest pictures.",
    )
    precision_note: str | None = Field(
        examples=[None], description="Why the precision asked for (bf16, int8) is not used."
    )
    loaded: bool
    available: bool
    reason: str | None = Field(examples=[None], description="Why the style is unavailable.")
    license: str | None = Field(examples=["non-commercial use only"])
    source: str | None = None
    url: str | None = None
    sha256: str | None = None
    default: bool


class UnavailableFile(BaseModel):
    name: str
    file: str
    reason: str


class StylesResponse(BaseModel):
    styles: list[StyleInfo]
    unavailable: list[UnavailableFile] = Field(description="Files that could not be described or loaded.")


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    styles: list[str]
    in_flight: int
    queued: int


class StyleLimits(BaseModel):
    name: str
    memory_fixed_bytes: int | None = Field(description="Measured working memory of one forward: the fixed part.")
    memory_per_pixel: float | None = Field(
        description="... and the bytes per processed pixel (measured styles; for ONNX styles, the line that "
        "sizes pictures above the measured ones)."
    )
    memory_at_512_bytes: int | None = Field(description="Working memory of one 512x512 forward; null until loaded.")
    largest_max_side: int | None = Field(
        description="The largest square max_side whose request fits the memory budget alone (null: no budget)."
    )


class LimitsResponse(BaseModel):
    memory_budget_bytes: int | None = Field(description="What the process may use; null when the budget is off.")
    memory_baseline_bytes: int | None = Field(description="Resident when serving began: the loaded models.")
    memory_reserved_bytes: int | None = Field(description="Held now by admitted requests.")
    resident_bytes: int = Field(description="The process's resident memory now.")
    workers: int
    max_queue: int
    request_timeout_s: float
    max_side_limit: int
    max_upload_bytes: int
    max_pixels: int
    styles: list[StyleLimits]


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}
