"""The jobs API's fields and headers, and its JSON bodies, as /docs shows them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Form, Header
from pydantic import BaseModel, Field

__all__ = [
    "DeflickerField",
    "FaceField",
    "FpsField",
    "IdempotencyKeyHeader",
    "JobDocument",
    "JobError",
    "JobItem",
    "JobList",
    "JobResult",
    "MarginField",
    "MaxSideField",
    "ModeField",
    "RangeHeader",
]


class JobError(BaseModel):
    code: str = Field(examples=["invalid_video"])
    message: str = Field(examples=["the video breaks off after 57 frames (Invalid data found when processing input)"])


class JobResult(BaseModel):
    url: str = Field(examples=["/v1/jobs/job_3kTq0c9xWmPz8vQa/result"])
    content_type: str = Field(examples=["video/mp4"])
    bytes: int = Field(examples=[1843211])
    expires_at: str = Field(examples=["2026-11-30T13:04:11.517Z"], description="When the result is deleted.")


class JobItem(BaseModel):
    name: str = Field(examples=["holiday/IMG_0042.jpg"], description="The entry's name in the uploaded ZIP.")
    status: Literal["succeeded", "failed"]
    error: JobError | None = None
    result: str | None = Field(None, examples=["0003_IMG_0042.png"], description="Its file in the result ZIP.")


class JobDocument(BaseModel):
    """A job as it stands now."""

    id: str = Field(examples=["job_3kTq0c9xWmPz8vQa"])
    kind: Literal["video", "batch", "picture"] = Field(description="Read from the uploaded bytes.")
    style: str = Field(examples=["animeganv2_hayao"])
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress: float = Field(ge=0, le=1, examples=[0.42])
    done: int = Field(examples=[55], description="Frames (video) or pictures (batch, picture) finished.")
    total: int = Field(examples=[132], description="Frames or pictures in all (a video's is the header's count).")
    queue_position: int | None = Field(examples=[None], description="1 for the next job to run; only while queued.")
    eta_s: float | None = Field(examples=[37.5], description="Seconds until it is done, from the model's speed.")
    created_at: str = Field(examples=["2026-11-30T12:03:58.102Z"])
    started_at: str | None = None
    finished_at: str | None = None
    error: JobError | None = None
    result: JobResult | None = None
    input_name: str = Field(examples=["clip.mp4"], description="The uploaded file's name, as sent.")
    options: dict[str, Any] = Field(examples=[{"max_side": 512, "fps": None, "deflicker": True}])
    items: list[JobItem] | None = Field(None, description="Batches only: every picture with its outcome.")


class JobList(BaseModel):
    jobs: list[JobDocument]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


MaxSideField = Annotated[
    int | None,
    Form(
        ge=16,
        description="Longest side of the processed frames or pictures (never upscaled); for `mode=avatar` the "
        "avatar's side. Default 512; at most `max_side_limit`, or `job_max_side_limit` for a single picture.",
    ),
]
FpsField = Annotated[
    float | None,
    Form(
        gt=0,
        le=240,
        description="Videos: frames per second of the result, at most the source's (higher keeps "
        "every frame); frames are dropped evenly and keep their timestamps.",
    ),
]
DeflickerField = Annotated[
    bool,
    Form(
        description="Videos: steady each frame's mean colour against the frames before it (the model restyles "
        "each frame alone). Off by default: on the test clips AnimeGANv2's colour moved less than half a level "
        "a frame and smoothing did not lower it; see docs/jobs.md."
    ),
]
ModeField = Annotated[
    Literal["transform", "avatar"], Form(description="ZIP batches and pictures: whole pictures, or face avatars.")
]
FaceField = Annotated[str, Form(pattern=r"^(largest|all|[0-9]{1,3})$", description="`mode=avatar`: which face.")]
MarginField = Annotated[float, Form(ge=0.0, le=3.0, description="`mode=avatar`: room around the face.")]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="A retried submit with the same key returns the job it made (200) instead of a second one.",
    ),
]


RangeHeader = Annotated[
    str | None,
    Header(
        alias="Range",
        max_length=200,
        description="One range, `bytes=first-last`, `bytes=first-` or `bytes=-count`; others are ignored "
        "and the whole result comes back.",
    ),
]
