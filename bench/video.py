"""Video jobs: frames per second against the raw model, against the AnimeGANv3 script's design, and beside requests.

    python bench/video.py                  # about 4-6 minutes on 2 cores; adds its run to bench/RESULTS.md
    python bench/video.py --no-results     # print only

In one run, with the real AnimeGANv2 Hayao weights on Big Buck Bunny (../shared/videos):

1. raw: the service's predictor in-process, one forward after another on the clip's decoded frames
   (at the job's frame size), with the service's malloc tunable: the ceiling, measured before and after
   every other phase, each of which is compared with the raw blocks either side of it (the machine's
   speed drifts by 10-20% over minutes);
2. job: ``animegan-api serve`` at its defaults, one video job; frames / (finished_at - started_at);
3. in this process, on the same predictor: the AnimeGANv3 video script's design as published
   (``script_design.py``: a reader thread, the model frame by frame, an ``mp4v`` writer, then ffmpeg's
   sound merge, which encodes the video again); an idealised sequential loop (read a frame, run the
   model, write it with the service's encoder, one after another, then a remux that puts the sound
   back: the least that design can cost); and our own pipeline (``animegan-api convert``'s path: the
   same predictor called inline, decoding and encoding on their own threads);
4. latency: ``/v1/transform`` at concurrency 1 (a 256 px photo) alone, then with a video job running;
5. flicker: the job's result with ``deflicker`` off and on (mean-colour flicker and shimmer, see
   ``animegan_api.pictures.flicker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from animegan_api.cli import reexec_with_hugepage_malloc
from animegan_api.config import Settings
from animegan_api.pictures.flicker import flicker, shimmer
from animegan_api.pictures.video import probe, read_frames
from animegan_api.runtime.predictors import load_style
from animegan_api.runtime.weights import ModelFile, read_spec
from animegan_api.serving.jobs.video_work import VideoRequest, convert_video, processing_size
from local_server import job_document, start_server, stop
from script_design import published_forward, run_script_design

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parents[1] / "shared"
MODEL = "animeganv2_hayao.pt"
DEFAULTS = Settings()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--clip", type=Path, default=SHARED / "videos" / "bigbuckbunny.mp4")
    parser.add_argument("--photo", type=Path, default=SHARED / "photos" / "food_01.jpg")
    parser.add_argument("--side", type=int, default=256, help="max_side of the frames")
    parser.add_argument("--model", default=MODEL, help="a model file in --weights (its sidecar beside it)")
    parser.add_argument("--requests", type=int, default=8, help="interactive requests per latency phase")
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args(argv)
    reexec_with_hugepage_malloc([str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])])
    started = time.time()
    run: dict[str, object] = {"clip": args.clip.name, "side": args.side, "style": args.model}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        weights = folder / "weights"
        weights.mkdir()
        for part in (args.model, args.model + ".json"):
            (weights / part).symlink_to((args.weights / part).resolve())
        raw = RawFrames(args.weights / args.model, args.clip, args.side)
        run["runtime"] = raw.style.runtime
        blocks = [raw.block()]
        process, url = start_server(
            weights,
            ["--log-level", "warning"],
            env={"ANIMEGAN_JOB_DIR": str(folder / "jobs"), "ANIMEGAN_CACHE_MAX_BYTES": "0"},
        )
        try:
            run["job"] = measure_job(url, args.clip, args.side, folder / "job.mp4", deflicker=False)
            blocks.append(raw.block())
            run["job_deflicker"] = measure_job(url, args.clip, args.side, folder / "job_df.mp4", deflicker=True)
            blocks.append(raw.block())
            run["latency"] = measure_latency(url, args.clip, args.photo.read_bytes(), args.requests)
        finally:
            stop(process)
        run["script"] = run_script_design(raw.style.predictor, args.clip, raw.size, folder)
        if args.model.endswith(".onnx"):
            published = published_forward(args.weights / args.model)
            run["published"] = run_script_design(published, args.clip, raw.size, folder, "published")
        run["sequential"] = measure_sequential(raw, args.clip, args.side, folder / "seq.mp4")
        run["pipeline"] = measure_pipeline(raw, args.clip, args.side, folder / "pipe.mp4")
        blocks.append(raw.block())
        run["flicker"] = {
            "off": measure_flicker(args.clip, folder / "job.mp4"),
            "on": measure_flicker(args.clip, folder / "job_df.mp4"),
        }
        run["raw_blocks_fps"] = blocks
        run["raw"] = {"frames": raw.frames, "fps": round(statistics.mean(blocks), 3)}
        for name, index in (("job", 0), ("job_deflicker", 1), ("script", 2), ("sequential", 2), ("pipeline", 2)):
            run[name]["raw_around_fps"] = round(statistics.mean(blocks[index : index + 2]), 3)  # type: ignore[index]
        if "published" in run:
            run["published"]["raw_around_fps"] = run["script"]["raw_around_fps"]  # type: ignore[index]
    run["minutes"] = round((time.time() - started) / 60, 1)
    report = render(run)
    print(report)
    if not args.no_results:
        save(run, report)
    return 0


class RawFrames:
    """The clip's frames as ready tensors and the service's predictor: raw forwards, block by block."""

    def __init__(self, model: Path, clip: Path, side: int) -> None:
        torch.set_num_threads(DEFAULTS.threads)
        runtimes = {"onnx_runtime": DEFAULTS.onnx_runtime, "torch_runtime": DEFAULTS.torch_runtime}
        self.style = load_style(ModelFile(model, read_spec(model)), DEFAULTS.threads, DEFAULTS.warmup_side, **runtimes)
        info = probe(clip, "mov")
        self.size = processing_size(info, side, self.style.size_multiple)
        frames = read_frames(clip, info, self.size)
        self.batches = [(f.rgb.transpose(2, 0, 1)[None] / np.float32(127.5) - 1).astype(np.float32) for f in frames]
        self.frames = len(self.batches)
        self.style.predictor(self.batches[0])

    def block(self) -> float:
        """Frames per second over every frame of the clip: as long as a job, so sustained-load throttling of
        the machine (seen here: the first seconds of a run are up to 20% faster) weighs on both alike."""
        chosen = self.batches
        began = time.perf_counter()
        for batch in chosen:
            self.style.predictor(batch)
        fps = len(chosen) / (time.perf_counter() - began)
        print(f"raw: {fps:.3f} frames/s at {self.size}", flush=True)
        return round(fps, 3)


def measure_sequential(raw: RawFrames, clip: Path, side: int, target: Path) -> dict[str, float]:
    """Read, forward, write, frame after frame in one thread; then a second pass for the sound."""
    style = raw.style
    began = time.perf_counter()
    silent = target.with_suffix(".silent.mp4")
    frames = 0
    with av.open(str(clip)) as source, av.open(str(silent), "w") as out:
        stream = source.streams.video[0]
        info = probe(clip, "mov")
        width, height = processing_size(info, side, style.size_multiple)
        video = out.add_stream("libx264", rate=Fraction(stream.average_rate))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for frame in source.decode(stream):
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
            output = style.predictor((rgb.transpose(2, 0, 1)[None] / np.float32(127.5) - 1).astype(np.float32))[0]
            pixels = np.rint(np.clip((output.transpose(1, 2, 0) + 1) * 127.5, 0, 255)).astype(np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            frames += 1
        out.mux(video.encode(None))
    with av.open(str(silent)) as pictures, av.open(str(clip)) as sound, av.open(str(target), "w") as out:
        mapping = {pictures.streams.video[0]: out.add_stream_from_template(pictures.streams.video[0])}
        mapping |= {s: out.add_stream_from_template(s) for s in sound.streams.audio}
        for container in (pictures, sound):
            for packet in container.demux(*[s for s in mapping if s.container is container]):
                if packet.dts is not None:
                    packet.stream = mapping[packet.stream]
                    out.mux(packet)
    seconds = time.perf_counter() - began
    print(f"sequential: {frames} frames in {seconds:.1f} s", flush=True)
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 3)}


def measure_pipeline(raw: RawFrames, clip: Path, side: int, target: Path) -> dict[str, float]:
    """Our frame pipeline in this process, the forward called inline: what ``animegan-api convert`` runs."""

    async def forward(style: object, batch: np.ndarray) -> np.ndarray:
        return raw.style.predictor(batch)

    request = VideoRequest(clip, probe(clip, "mov"), raw.style, side)
    began = time.perf_counter()
    frames = asyncio.run(convert_video(request, target, forward))
    seconds = time.perf_counter() - began
    print(f"pipeline: {frames} frames in {seconds:.1f} s", flush=True)
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 3)}


def measure_job(url: str, clip: Path, side: int, target: Path, deflicker: bool) -> dict[str, float]:
    """One video job on the running service: its frames over its running time (started_at to finished_at)."""
    job = _submit(url, clip, side, deflicker)
    final = job_document(url, job["id"], timeout_s=None)
    assert final["status"] == "succeeded", final
    target.write_bytes(httpx.get(url + final["result"]["url"], timeout=60).content)
    seconds = _seconds(final["finished_at"]) - _seconds(final["started_at"])
    print(f"job (deflicker={deflicker}): {final['done']} frames in {seconds:.1f} s", flush=True)
    return {"frames": final["done"], "seconds": round(seconds, 2), "fps": round(final["done"] / seconds, 3)}


def measure_flicker(clip: Path, result: Path) -> dict[str, float]:
    """Mean-colour flicker and shimmer of the result against the source at the result's size."""
    with av.open(str(result)) as container:
        outputs = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    height, width = outputs[0].shape[:2]
    info = probe(clip, "mov")
    sources = [frame.rgb for frame in read_frames(clip, info, (width, height))]
    return {"flicker": round(flicker(sources, outputs), 3), "shimmer": round(shimmer(sources, outputs), 3)}


def measure_latency(url: str, clip: Path, photo: bytes, requests: int) -> dict[str, object]:
    """``/v1/transform`` at concurrency 1: alone, then while a 512 px video job runs."""
    alone = [_transform_s(url, photo) for _ in range(requests)]
    job = _submit(url, clip, 512, False)
    frame_s = _pace(url, job["id"])
    beside = []
    for _ in range(requests):
        beside.append(_transform_s(url, photo))
    state = httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=10).json()
    httpx.delete(f"{url}/v1/jobs/{job['id']}", timeout=120)
    result = {
        "alone_p50_s": round(statistics.median(alone), 3),
        "alone_max_s": round(max(alone), 3),
        "beside_job_p50_s": round(statistics.median(beside), 3),
        "beside_job_max_s": round(max(beside), 3),
        "job_frames_meanwhile": state["done"],
        "job_status_meanwhile": state["status"],
        "job_frame_s": round(frame_s, 3),
    }
    print(f"latency: {result}", flush=True)
    return result


def _pace(url: str, job_id: object) -> float:
    """Seconds a frame of the running job takes with nothing else running: frames done over 5 s."""

    def done() -> tuple[float, int]:
        return time.perf_counter(), int(httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()["done"])

    first = done()
    while first[1] < 2:
        time.sleep(0.2)
        first = done()
    time.sleep(5)
    last = done()
    return (last[0] - first[0]) / max(1, last[1] - first[1])


def _submit(url: str, clip: Path, side: int, deflicker: bool) -> dict[str, object]:
    fields = {"max_side": str(side), "deflicker": str(deflicker).lower()}
    response = httpx.post(f"{url}/v1/jobs", files={"file": (clip.name, clip.read_bytes())}, data=fields, timeout=60)
    assert response.status_code == 202, response.text
    job: dict[str, object] = response.json()
    return job


def _transform_s(url: str, photo: bytes) -> float:
    began = time.perf_counter()
    response = httpx.post(
        f"{url}/v1/transform", files={"image": ("p.jpg", photo)}, data={"max_side": "256"}, timeout=120
    )
    assert response.status_code == 200, response.text
    return time.perf_counter() - began


def _seconds(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def _relative(phase: dict[str, float]) -> float:
    return phase["fps"] / phase["raw_around_fps"]


def render(run: dict) -> str:
    raw, job, seq, latency = run["raw"], run["job"], run["sequential"], run["latency"]
    phases = (
        ("video job (service)", job),
        ("video job, deflicker (service)", run["job_deflicker"]),
        ("AnimeGANv3 video script's design on the service's predictor (in process)", run["script"]),
        *(
            [("AnimeGANv3 video script as published: its design, its ONNX Runtime session", run["published"])]
            if "published" in run
            else []
        ),
        ("sequential loop, idealised (in process)", seq),
        ("our pipeline, forward inline (in process, `convert`)", run["pipeline"]),
    )
    rows = [
        "| | frames | seconds | frames/s | raw frames/s around it | / raw |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['frames']} | {r['seconds']} | {r['fps']} | {r['raw_around_fps']} | {_relative(r):.3f} |"
            for name, r in phases
        ),
    ]
    flick = run["flicker"]
    extra = latency["beside_job_p50_s"] - latency["alone_p50_s"]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: video jobs (`python bench/video.py`)",
        "",
        f"{run['clip']} ({raw['frames']} frames) at max_side {run['side']}, {run['style']} on "
        f"{run.get('runtime', 'its default runtime')}, service defaults "
        f"(W x T = 1 x 2); the run took {run['minutes']} min. Raw forward blocks (frames/s, in order): "
        f"{', '.join(map(str, run['raw_blocks_fps']))}.",
        "",
        *rows,
        "",
        *(
            [
                f"- job / the AnimeGANv3 script as published (its own ONNX Runtime session): "
                f"{job['fps'] / run['published']['fps']:.2f} as measured, "
                f"{_relative(job) / _relative(run['published']):.2f} each against the service's raw forwards around it"
            ]
            if "published" in run
            else []
        ),
        f"- job / raw: {_relative(job):.3f} (target >= 0.9); job / the script's design: "
        f"{job['fps'] / run['script']['fps']:.2f} as measured, {_relative(job) / _relative(run['script']):.2f} each "
        f"against the raw forwards around it; job / idealised sequential loop: "
        f"{job['fps'] / seq['fps']:.2f} as measured, {_relative(job) / _relative(seq):.2f} each against the raw "
        f"forwards around it (the machine drifts); in process, our pipeline / sequential: "
        f"{run['pipeline']['fps'] / seq['fps']:.2f}",
        f"- `/v1/transform` at concurrency 1 (256 px), back to back: p50 {latency['alone_p50_s']} s alone, "
        f"{latency['beside_job_p50_s']} s beside a 512 px video job (+{extra:.3f} s; one of the job's forwards "
        f"takes {latency['job_frame_s']} s; max {latency['alone_max_s']} vs {latency['beside_job_max_s']} s)",
        f"- flicker (8-bit levels a frame) off {flick['off']['flicker']}, on {flick['on']['flicker']}; shimmer "
        f"off {flick['off']['shimmer']}, on {flick['on']['shimmer']}",
        "",
    ]
    return "\n".join(lines)


def save(run: dict, report: str) -> None:
    results = BENCH / "RESULTS.md"
    text = results.read_text()
    head, _, rest = text.partition("\n## ")
    results.write_text(f"{head}\n{report}\n## {rest}")
    folder = BENCH / "results"
    folder.mkdir(exist_ok=True)
    (folder / f"video-{datetime.now(UTC):%Y%m%dT%H%M}.json").write_text(json.dumps(run, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
