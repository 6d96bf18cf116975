"""``/v1/jobs`` in process: submit, watch, download, cancel and delete, owners, limits and hostile uploads."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from animegan_api.config import Settings
from conftest import AppClient, expect_error, picture_bytes, serving, swap_predictor
from gates import Gate, until
from job_calls import events, finished, submit
from videos import make_clip


@pytest.fixture
def clip(tmp_path: Path) -> bytes:
    return make_clip(tmp_path / "clip.mp4", audio="aac").read_bytes()


async def test_a_video_job_from_submit_to_seekable_result(client: AppClient, clip: bytes, tmp_path: Path) -> None:
    job = await submit(client, clip, max_side="64")
    assert (job["kind"], job["status"], job["total"], job["queue_position"]) == ("video", "queued", 12, 1)
    stream = await events(client, job["id"])
    ids = [event_id for event_id, _ in stream]
    assert ids == sorted(set(ids))
    progress = [doc["progress"] for _, doc in stream]
    assert progress == sorted(progress)
    final = stream[-1][1]
    assert final["status"] == "succeeded" and final["done"] == final["total"] == 12
    assert final["result"]["content_type"] == "video/mp4"
    whole = await client.get(final["result"]["url"])
    assert whole.status_code == 200 and len(whole.content) == final["result"]["bytes"]
    part = await client.get(final["result"]["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    (tmp_path / "out.mp4").write_bytes(whole.content)
    with av.open(str(tmp_path / "out.mp4")) as result, av.open(io.BytesIO(clip)) as source:
        assert result.streams.video[0].frames == 12
        assert [bytes(p) for p in result.demux(audio=0) if p.size] == [
            bytes(p) for p in source.demux(audio=0) if p.size
        ]


async def test_resuming_events_sends_only_what_is_newer(client: AppClient, clip: bytes) -> None:
    job = await submit(client, clip, max_side="64")
    final = await finished(client, job["id"])
    current = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert current == final
    latest = (await events(client, job["id"]))[-1][0]
    assert await events(client, job["id"], **{"Last-Event-ID": str(latest - 1)}) == [(latest, final)]


async def test_an_idempotency_key_returns_the_same_job(client: AppClient, clip: bytes) -> None:
    first = await client.post("/v1/jobs", files={"file": ("a.mp4", clip)}, headers={"Idempotency-Key": "k1"})
    again = await client.post("/v1/jobs", files={"file": ("a.mp4", clip)}, headers={"Idempotency-Key": "k1"})
    other = await client.post("/v1/jobs", files={"file": ("a.mp4", clip)}, headers={"Idempotency-Key": "k2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    listed = (await client.get("/v1/jobs")).json()
    assert [doc["id"] for doc in listed["jobs"]] == [other.json()["id"], first.json()["id"]]


async def test_results_are_409_until_succeeded_and_unknown_jobs_404(client: AppClient, clip: bytes) -> None:
    swap_predictor(client, gate := Gate())
    job = await submit(client, clip, max_side="64")
    expect_error(await client.get(f"/v1/jobs/{job['id']}/result"), 409, "job_not_finished")
    expect_error(await client.get("/v1/jobs/job_nope"), 404, "job_not_found")
    expect_error(await client.delete("/v1/jobs/job_nope"), 404, "job_not_found")
    polled = await client.get(f"/v1/jobs/{job['id']}")
    assert 1 <= int(polled.headers["Retry-After"]) <= 10  # when to poll again, while it runs
    gate.open()
    assert (await finished(client, job["id"]))["status"] == "succeeded"
    assert "Retry-After" not in (await client.get(f"/v1/jobs/{job['id']}")).headers


async def test_cancel_stops_a_running_job_within_a_frame_and_a_queued_one_at_once(
    client: AppClient, clip: bytes
) -> None:
    swap_predictor(client, gate := Gate())
    running = await submit(client, clip, max_side="64")
    queued = await submit(client, clip, max_side="64")
    await gate.started(1)
    canceled = await client.delete(f"/v1/jobs/{queued['id']}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    stopping = client.delete(f"/v1/jobs/{running['id']}")
    gate.open()
    stopped = (await stopping).json()
    assert stopped["status"] == "canceled" and stopped["done"] <= 2 and stopped["result"] is None
    folder = client.app.state.services.jobs.files.folder
    assert not any((folder / running["id"]).iterdir()) and not any((folder / queued["id"]).iterdir())
    assert len(gate.inputs) <= 2  # the frame in the model finished; no frame after it started
    deleted = await client.delete(f"/v1/jobs/{running['id']}")
    assert deleted.status_code == 204
    expect_error(await client.get(f"/v1/jobs/{running['id']}"), 404, "job_not_found")


async def test_jobs_belong_to_their_key(make_client: Callable[[Settings], Any], settings_for: Any, clip: bytes) -> None:
    settings = settings_for(api_keys="alpha,beta", admin_key="root", job_workers=0)
    async with make_client(settings) as client:
        alpha, beta, root = ({"X-API-Key": key} for key in ("alpha", "beta", "root"))
        made = await client.post("/v1/jobs", files={"file": ("a.mp4", clip)}, headers=alpha)
        job_id = made.json()["id"]
        assert (await client.get(f"/v1/jobs/{job_id}", headers=alpha)).status_code == 200
        expect_error(await client.get(f"/v1/jobs/{job_id}", headers=beta), 404, "job_not_found")
        expect_error(await client.delete(f"/v1/jobs/{job_id}", headers=beta), 404, "job_not_found")
        assert (await client.get("/v1/jobs", headers=beta)).json()["jobs"] == []
        assert (await client.get(f"/v1/jobs/{job_id}", headers=root)).status_code == 200
        assert [doc["id"] for doc in (await client.get("/v1/jobs", headers=root)).json()["jobs"]] == [job_id]
        expect_error(await client.get("/v1/jobs"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("list.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"),
        ("list.txt", b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://127.0.0.1:1/x.mp4'\n"),
        ("clip.mp4", b"just some text that claims to be a video"),
    ],
)
async def test_playlists_and_strangers_are_unsupported_formats(client: AppClient, name: str, data: bytes) -> None:
    message = expect_error(await client.post("/v1/jobs", files={"file": (name, data)}), 415, "unsupported_format")
    assert "MP4/MOV" in message


async def test_a_truncated_video_fails_its_job_and_nothing_else(client: AppClient, tmp_path: Path) -> None:
    whole = make_clip(tmp_path / "long.mp4", frames=120, faststart=True).read_bytes()
    job = await submit(client, whole[: int(len(whole) * 0.75)], max_side="64")
    final = await finished(client, job["id"])
    assert final["status"] == "failed" and final["error"]["code"] == "invalid_video"
    assert not any((client.app.state.services.jobs.files.folder / job["id"]).iterdir())
    photo = await client.post("/v1/transform", files={"image": ("p.png", picture_bytes())})
    assert photo.status_code == 200


async def test_a_video_without_its_index_is_refused_at_submit(client: AppClient, shared_videos: Path) -> None:
    data = (shared_videos / "bigbuckbunny.mp4").read_bytes()
    response = await client.post("/v1/jobs", files={"file": ("bbb.mp4", data[: len(data) // 3])})
    assert response.status_code in (202, 422), response.text
    if response.status_code == 422:
        expect_error(response, 422, "invalid_video")
    else:
        assert (await finished(client, response.json()["id"]))["error"]["code"] == "invalid_video"


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ({"video_max_duration_s": 0.2}, "video_too_long"),
        ({"video_max_frames": 5}, "video_too_long"),
        ({"video_max_frame_pixels": 1000}, "video_too_large"),
        ({"video_max_total_pixels": 20_000}, "video_too_large"),
        ({"job_disk_mb": 16, "job_max_upload_bytes": 64 * 1024 * 1024}, None),
    ],
)
async def test_header_limits_refuse_at_submit(
    make_client: Callable[[Settings], Any], settings_for: Any, tmp_path: Path, limit: dict[str, Any], code: str | None
) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=12).read_bytes()
    async with make_client(settings_for(**limit)) as client:
        if code is not None:
            expect_error(await client.post("/v1/jobs", files={"file": ("c.mp4", clip)}), 413, code)
            return
        big = make_clip(tmp_path / "big.mp4", size=(640, 480), frames=150).read_bytes()
        expect_error(
            await client.post("/v1/jobs", files={"file": ("b.mp4", big)}, data={"max_side": "2048"}),
            507,
            "insufficient_storage",
        )


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_a_batch_names_its_failures_and_carries_on(client: AppClient) -> None:
    batch = _zip({"a.png": picture_bytes(), "../evil.jpg": b"not a picture", "dir/b.webp": picture_bytes(fmt="WEBP")})
    job = await submit(client, batch, name="photos.zip", max_side="64", format="jpeg")
    assert (job["kind"], job["total"]) == ("batch", 3)
    final = await finished(client, job["id"])
    assert final["status"] == "succeeded" and final["done"] == 3
    assert [(item["name"], item["status"]) for item in final["items"]] == [
        ("a.png", "succeeded"),
        ("../evil.jpg", "failed"),
        ("dir/b.webp", "succeeded"),
    ]
    assert final["items"][1]["error"]["code"] == "unsupported_image"
    result = await client.get(final["result"]["url"])
    assert result.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
        assert sorted(archive.namelist()) == ["0000_a.jpg", "0002_b.jpg", "manifest.json"]
        assert json.loads(archive.read("manifest.json"))["items"] == final["items"]
        assert archive.read("0000_a.jpg").startswith(b"\xff\xd8")


async def test_zip_bombs_and_nested_archives_are_refused_at_submit(client: AppClient) -> None:
    bomb = _zip({"zeros.png": bytes(300 * 1024 * 1024)})
    expect_error(await client.post("/v1/jobs", files={"file": ("b.zip", bomb)}), 413, "archive_too_large")
    nested = _zip({"inner.zip": _zip({"a.png": picture_bytes()})})
    expect_error(await client.post("/v1/jobs", files={"file": ("n.zip", nested)}), 422, "invalid_archive")


async def test_a_picture_larger_than_a_request_may_take_runs_as_a_job(
    make_client: Callable[[Settings], Any], settings_for: Any
) -> None:
    photo = picture_bytes((600, 400), fmt="JPEG")
    async with make_client(settings_for(default_max_side=256, max_side_limit=256)) as client:
        refused = await client.post("/v1/transform", files={"image": ("p.jpg", photo)}, data={"max_side": "600"})
        assert refused.status_code == 422
        job = await submit(client, photo, name="p.jpg", max_side="600", format="jpeg")
        assert job["kind"] == "picture"
        final = await finished(client, job["id"])
        assert final["status"] == "succeeded", final
        result = await client.get(final["result"]["url"])
        assert Image.open(io.BytesIO(result.content)).size == (600, 400)
        too_large = await client.post("/v1/jobs", files={"file": ("p.jpg", photo)}, data={"max_side": "5000"})
        assert too_large.status_code == 422 and too_large.json()["error"]["fields"][0]["field"] == "max_side"


async def test_queued_jobs_survive_a_restart_and_an_interrupted_one_runs_again(settings_for: Any, clip: bytes) -> None:
    async with serving(settings_for(job_workers=0)) as client:
        waiting = await submit(client, clip, max_side="64")
        interrupted = await submit(client, clip, max_side="64")
        store = client.app.state.services.jobs.store
        record = await store.get(interrupted["id"])
        record.status = "running"  # as if the process had died in the middle of it
        assert await store.save(record)
    async with serving(settings_for(job_workers=1)) as client:
        for job in (waiting, interrupted):
            assert (await finished(client, job["id"]))["status"] == "succeeded"


async def test_expired_results_are_swept(client: AppClient, clip: bytes) -> None:
    job = await submit(client, clip, max_side="64")
    final = await finished(client, job["id"])
    jobs = client.app.state.services.jobs
    assert await jobs.sweep() == 0
    assert await jobs.sweep(now=(await jobs.store.get(job["id"])).expires_at + 1) == 1
    expect_error(await client.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert not (jobs.files.folder / job["id"]).exists()
    assert final["result"]["expires_at"]


async def test_job_metrics(client: AppClient, clip: bytes) -> None:
    job = await submit(client, clip, max_side="64")
    await finished(client, job["id"])
    await until(lambda: True)
    text = (await client.get("/metrics")).text
    assert 'animegan_jobs{status="succeeded"} 1.0' in text
    assert 'animegan_job_units_total{kind="video"} 12.0' in text
    assert "animegan_job_queue_depth 0.0" in text
    assert 'animegan_job_duration_seconds_count{kind="video",status="succeeded"} 1.0' in text


async def test_odd_sides_and_a_rotated_phone_clip_come_out_even_and_upright(client: AppClient, tmp_path: Path) -> None:
    odd = make_clip(tmp_path / "odd.mp4", size=(67, 51), frames=6, pix_fmt="yuv444p").read_bytes()
    phone = make_clip(tmp_path / "phone.mp4", size=(64, 48), frames=6, rotation=90).read_bytes()
    for data, expected in ((odd, (64, 48)), (phone, (48, 64))):
        job = await submit(client, data, max_side="512")
        final = await finished(client, job["id"])
        assert final["status"] == "succeeded", final
        result = await client.get(final["result"]["url"])
        with av.open(io.BytesIO(result.content)) as container:
            first = next(container.decode(video=0))
            assert (first.width, first.height) == expected
            assert first.rotation == 0  # upright pixels, no rotation left for the player to apply
            assert container.streams.video[0].frames == 6


async def test_the_real_clips_keep_their_sound_rate_and_frame_count(client: AppClient, shared_videos: Path) -> None:
    for name, rate in (("bigbuckbunny.mp4", Fraction(25)), ("carphone_pristine.mp4", Fraction(30000, 1001))):
        source = (shared_videos / name).read_bytes()
        job = await submit(client, source, name=name, max_side="64")
        final = await finished(client, job["id"])
        assert final["status"] == "succeeded", final
        result = (await client.get(final["result"]["url"])).content
        with av.open(io.BytesIO(result)) as out, av.open(io.BytesIO(source)) as src:
            video, original = out.streams.video[0], src.streams.video[0]
            assert (video.average_rate, video.frames) == (rate, original.frames)
            assert abs(float(out.duration - src.duration) / 1e6) <= float(1 / rate)
            sound = [bytes(p) for p in out.demux(audio=0) if p.size] if out.streams.audio else []
            expected = [bytes(p) for p in src.demux(audio=0) if p.size] if src.streams.audio else []
            assert sound == expected  # BBB's 5.1 AAC packet for packet; carphone has none, and gets none


async def test_an_avatar_batch_names_the_photo_without_a_face(client: AppClient, shared: Path) -> None:
    photos = shared / "photos"
    batch = _zip(
        {"me.jpg": (photos / "face_01.jpg").read_bytes(), "view.jpg": (photos / "landscape_01.jpg").read_bytes()}
    )
    job = await submit(client, batch, name="b.zip", mode="avatar", max_side="128")
    final = await finished(client, job["id"])
    assert [(item["name"], item["status"]) for item in final["items"]] == [
        ("me.jpg", "succeeded"),
        ("view.jpg", "failed"),
    ]
    assert final["items"][1]["error"]["code"] == "no_face"
    with zipfile.ZipFile(io.BytesIO((await client.get(final["result"]["url"])).content)) as archive:
        assert Image.open(io.BytesIO(archive.read("0000_me.png"))).size == (128, 128)
