"""A job's life through the in-process API, as the job route tests drive it: submit, follow its events, wait."""

from __future__ import annotations

import json
from typing import Any

from conftest import AppClient

__all__ = ["events", "finished", "submit"]


async def submit(client: AppClient, data: bytes, name: str = "clip.mp4", **fields: str) -> dict[str, Any]:
    response = await client.post("/v1/jobs", files={"file": (name, data)}, data=fields)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    body: dict[str, Any] = response.json()
    return body


async def events(client: AppClient, job_id: str, **headers: str) -> list[tuple[int, dict[str, Any]]]:
    """Every event of the job's stream until it ends: (id, document)."""
    seen: list[tuple[int, dict[str, Any]]] = []
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event_id = 0
        async for line in stream.aiter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                seen.append((event_id, json.loads(line[6:])))
    return seen


async def finished(client: AppClient, job_id: str) -> dict[str, Any]:
    return (await events(client, job_id))[-1][1]
