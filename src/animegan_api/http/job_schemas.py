"""The JSON bodies of the jobs API, as /docs shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["JobDocument", "JobError", "JobItem", "JobList", "JobResult"]


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
