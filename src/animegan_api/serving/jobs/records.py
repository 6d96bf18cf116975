"""A job's record: what was asked, where it stands, and the document the API shows for it.

Records are plain data so any store (the embedded SQLite one, a shared one)
keeps them the same way; :meth:`Job.document` is the one place their public
shape is made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FINAL", "STATUSES", "Job", "JobKind", "JobStatus", "new_id"]

JobKind = Literal["video", "batch", "picture"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
FINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})
STATUSES: tuple[JobStatus, ...] = ("queued", "running", "succeeded", "failed", "canceled")


def new_id() -> str:
    """An unguessable job id: knowing one job's id says nothing of another's."""
    return "job_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


@dataclass
class Job:
    """One job: its request, its state, and what it produced."""

    id: str
    kind: JobKind
    style: str
    options: dict[str, Any]
    owner: str | None = None
    idempotency_key: str | None = None
    input_name: str = ""
    status: JobStatus = "queued"
    done: int = 0
    total: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    error: dict[str, str] | None = None
    result_name: str | None = None  # the result's file in the job's folder
    content_type: str | None = None
    result_bytes: int | None = None
    reserved_bytes: int = 0  # disk the job may come to hold, counted against the folder's limit at submit
    seconds_per_unit: float = 0.0  # the model time one frame or picture is expected to take
    items: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0  # runs started; one a crash or a lost replica cut short counts, a shutdown does not
    cancel_requested: bool = False  # a cancel for a running job, found by whichever replica runs it
    version: int = 0  # bumped by every saved change: the events stream's id and the stores' write check

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def progress(self) -> float:
        if self.status == "succeeded":
            return 1.0
        return round(self.done / self.total, 4) if self.total else 0.0

    def document(self, queue_position: int | None = None, eta_s: float | None = None) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` shows it."""
        doc: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "style": self.style,
            "status": self.status,
            "progress": self.progress,
            "done": self.done,
            "total": self.total,
            "queue_position": queue_position if self.status == "queued" else None,
            "eta_s": None if eta_s is None else round(eta_s, 1),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "result": None,
            "input_name": self.input_name,
            "options": self.options,
        }
        if self.status == "succeeded" and self.result_name:
            doc["result"] = {
                "url": f"/v1/jobs/{self.id}/result",
                "content_type": self.content_type,
                "bytes": self.result_bytes,
                "expires_at": _iso(self.expires_at),
            }
        if self.kind == "batch":
            doc["items"] = self.items
        return doc


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
