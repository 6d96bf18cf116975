"""Service settings, read from ``ANIMEGAN_*`` environment variables.

Every knob an operator may turn lives here so a bad value fails at startup
with a message naming the variable, not at the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["MiB", "Settings"]

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Validated configuration; construct once and hand to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore")

    weights_dir: Path = Field(Path("weights"), description="Folder scanned for *.pt / *.onnx models and sidecars.")
    default_style: str | None = Field(None, description="Style used when a request names none.")
    backend: Literal["torch", "onnxruntime"] = Field(
        "torch",
        description="Which file runs a style that exists in both formats; single-format styles run as they are.",
    )
    load_mode: Literal["eager", "lazy"] = Field("eager", description="Load every model at startup, or on first use.")
    max_loaded_models: int | None = Field(None, ge=1, description="LRU bound on models kept loaded (none: no bound).")
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32",
        description="bf16 autocast for PyTorch styles (only on CPUs with AVX-512 BF16 or AMX) or int8 convolutions "
        "for ONNX styles (only with AVX-512 VNNI, AVX-VNNI or AMX), and only within 35 dB PSNR of fp32.",
    )
    onnx_runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="What runs ONNX styles: auto times ONNX Runtime and OpenVINO on the warm-up picture at load "
        "and keeps the faster per style.",
    )
    torch_runtime: Literal["auto", "pytorch", "openvino"] = Field(
        "pytorch",
        description="What runs PyTorch (AnimeGANv2) styles: openvino converts the generator at load; auto times "
        "both on the warm-up picture and keeps the faster per style.",
    )
    precision_check_dir: Path | None = Field(
        None, description="Photos for the bf16/int8 quality check (default: a built-in test pattern)."
    )
    compare_max_styles: int = Field(4, ge=1, le=16, description="Most styles one /v1/compare request may ask for.")
    admin_key: SecretStr | None = Field(
        None, description="Key for /v1/admin/*; without it those routes only answer loopback clients."
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    workers: int = Field(1, ge=1, le=64, description="Requests running inference at once (W).")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads (T).")
    malloc_hugepages: bool = Field(
        True,
        description="serve restarts itself once with glibc malloc on transparent huge pages "
        "(about 20% faster forwards).",
    )
    interop_threads: int = Field(1, ge=1, le=64)
    inference_nice: int = Field(
        5,
        ge=0,
        le=19,
        description="Nice increment of the inference threads, so the event loop answers at once (0: off).",
    )
    image_threads: int = Field(2, ge=1, le=64, description="Threads that decode and encode pictures.")
    max_queue: int = Field(8, ge=0, le=10_000, description="Requests allowed to wait beyond W.")
    request_timeout_s: float = Field(30.0, gt=0, le=3600, description="Deadline for queue wait plus inference.")
    max_batch: int = Field(
        1, ge=1, le=64, description="Most waiting requests (same style and size) run as one forward; 1: no batching."
    )
    max_batch_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="How long a batch holding a free slot waits to fill."
    )
    retry_after_s: int = Field(2, ge=1, le=3600, description="Retry-After sent with 503 refusals.")

    max_upload_bytes: int = Field(10 * MiB, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    default_max_side: int = Field(512, ge=16)
    max_side_limit: int = Field(2048, ge=16)
    warmup_side: int = Field(256, ge=16, le=4096, description="Size of the warm-up forward at startup.")

    memory_budget_mb: int | None = Field(
        None,
        ge=0,
        description="Memory the process may use, in MiB; admission reserves each request's predicted bytes "
        "within it. Default: the container's limit less max(10%, 256 MiB), else 75% of physical memory; 0: off.",
    )
    memory_profile_dir: Path | None = Field(
        None,
        description="Folder of `animegan-api memory-profile` files: ONNX styles' memory measured at the sizes they "
        "serve, used to size large pictures (default: the line measured at load).",
    )

    avatar_max_faces: int = Field(8, ge=1, le=32, description="Most faces one `face=all` avatar sheet shows.")
    face_detect_side: int = Field(
        640,
        ge=160,
        le=4096,
        description="Longest side of the copy faces are searched on: faces smaller than about 80/this of the "
        "photo's longest side are not found; larger is slower (about 20 ms at 640 px).",
    )

    cache_max_bytes: int = Field(
        64 * MiB, ge=0, description="Bytes of finished pictures kept for repeated uploads (0: no result cache)."
    )

    max_head_bytes: int = Field(
        64 * 1024, ge=4096, le=16 * MiB, description="Largest request line plus headers (431 above it)."
    )
    head_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest a request's line and headers may take to arrive (408)."
    )
    body_timeout_s: float = Field(
        15.0, gt=0, le=600, description="Longest wait for the next chunk of a request body (408)."
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="On SIGTERM, how long admitted requests may finish."
    )

    rate_limit: str = Field("60/minute", description="Limit per API key, or per client address without keys.")
    rate_limit_enabled: bool = True
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from X-Forwarded-For (behind a proxy)."
    )
    api_keys: SecretStr | None = Field(None, description="Comma-separated keys; when set, /v1/* needs one.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line (added to api_keys).")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    job_dir: Path = Field(
        Path("jobs"), description="Folder for job inputs, results and the SQLite store of job records (created)."
    )
    job_workers: int = Field(1, ge=0, le=16, description="Jobs running at once (0: this replica runs none).")
    job_ttl_s: int = Field(3600, ge=60, description="Seconds a finished job and its result are kept.")
    job_disk_mb: int = Field(
        4096, ge=16, description="MiB the job folder may hold; a job whose files would not fit is refused (507)."
    )
    job_max_upload_bytes: int = Field(512 * MiB, ge=1024, description="Largest upload to POST /v1/jobs.")
    job_max_side_limit: int = Field(
        4096, ge=16, description="Largest max_side of a picture job (pictures too large for one request)."
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Starts a job gets when runs are cut short (a crash, a lost replica) before it fails.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis for job records, queue and notices, shared by every replica (job_dir then on shared "
        "storage); unset: the embedded SQLite store.",
    )
    job_store: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$",
        description="S3-compatible object storage for job inputs and results, shared by every replica: "
        "s3://bucket/prefix (endpoint, region and credentials from the usual AWS variables, e.g. "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID); unset: files in job_dir.",
    )
    job_result_redirect: bool = Field(
        False,
        description="With job_store: answer a result download with 307 to a link signed for 15 minutes "
        "(the client must reach the store) instead of streaming it through the replica.",
    )
    redis_prefix: str = Field(
        "{animegan}:", min_length=1, max_length=64, description="Prefix of this service's Redis keys (a hash tag)."
    )
    job_heartbeat_s: float = Field(
        10.0,
        ge=1,
        le=600,
        description="With Redis: a replica that has not renewed its claim on a job for this "
        "long has lost it, and another replica runs the job.",
    )
    video_max_duration_s: float = Field(600.0, gt=0, description="Longest video a job takes, in seconds.")
    video_max_frames: int = Field(20_000, ge=1, description="Most frames in a video job's source.")
    video_max_frame_pixels: int = Field(
        3840 * 2160, ge=1, description="Most pixels in one frame of the source (4K by default)."
    )
    video_max_total_pixels: int = Field(
        30_000_000_000, ge=1, description="Most pixels in all the frames of the source together (decode work)."
    )
    batch_max_files: int = Field(500, ge=1, description="Most pictures in one ZIP batch.")
    batch_max_bytes: int = Field(1024 * MiB, ge=1024, description="Most bytes a ZIP batch may inflate to.")
    batch_max_ratio: float = Field(
        200.0, ge=2, description="Highest compression ratio of one entry above 1 MiB (higher: a zip bomb)."
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = Field("text", description="json: one JSON object per line (containers).")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '60/minute': {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check_sides(self) -> Settings:
        if self.default_max_side > self.max_side_limit:
            raise ValueError("default_max_side must not exceed max_side_limit")
        return self

    @model_validator(mode="after")
    def _check_precision_dir(self) -> Settings:
        if self.precision_check_dir is not None and not self.precision_check_dir.is_dir():
            raise ValueError(f"precision_check_dir {self.precision_check_dir} is not a folder")
        return self

    @model_validator(mode="after")
    def _check_keys_file(self) -> Settings:
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"api_keys_file {self.api_keys_file} is not a readable file")
        return self

    def key_set(self) -> frozenset[str]:
        """Every configured API key, from the variable and the file; empty when auth is off."""
        keys = self.api_keys.get_secret_value().split(",") if self.api_keys else []
        if self.api_keys_file is not None:
            keys += self.api_keys_file.read_text(encoding="utf-8").splitlines()
        return frozenset(k.strip() for k in keys if k.strip())
