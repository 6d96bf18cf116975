"""Shared fixtures: model files the tests make themselves, the real ones from ../shared, an app client."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import numpy as np
import pytest
import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.http.app import create_app
from animegan_api.runtime.model import Generator
from animegan_api.runtime.predictors import load_style
from animegan_api.runtime.weights import ModelFile, read_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # local_server: helpers shared with bench/

pytest_plugins = ["browser", "redis_server", "s3_server"]  # the chromium, redis_server and S3 fixtures

SHARED = Path(os.environ.get("ANIMEGAN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))

# CI replays the same examples every run, so a red build is reproducible; local runs keep exploring.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def save_random_generator(path: Path, seed: int = 0, sidecar: dict[str, Any] | None = None) -> Path:
    """A seeded, randomly initialised generator in the published state-dict format."""
    torch.manual_seed(seed)
    torch.save(Generator().state_dict(), path)
    if sidecar is not None:
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path


class _Layout(torch.nn.Module):
    """Wraps a generator in the calling convention of an exported AnimeGAN graph."""

    def __init__(self, generator: Generator, nhwc: bool, multiple_of_16: bool) -> None:
        super().__init__()
        self.generator, self.nhwc, self.multiple_of_16 = generator, nhwc, multiple_of_16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        if self.multiple_of_16:  # a reshape that only works when the height divides by 16, like AnimeGANv3 tiny
            b, c, h, w = x.shape
            x = x.reshape(b, c, h // 16, 16, w).reshape(b, c, h, w)
        y = self.generator(x)
        return y.permute(0, 2, 3, 1) if self.nhwc else y


def save_onnx_generator(
    path: Path, seed: int = 0, nhwc: bool = False, multiple_of_16: bool = False, sidecar: dict[str, Any] | None = None
) -> Path:
    """A seeded random generator exported to ONNX, NCHW or NHWC, with dynamic batch and size."""
    import warnings

    torch.manual_seed(seed)
    module = _Layout(Generator().eval(), nhwc, multiple_of_16)
    example = torch.zeros(1, 32, 32, 3) if nhwc else torch.zeros(1, 3, 32, 32)
    axes = {0: "batch", 1: "height", 2: "width"} if nhwc else {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
    if sidecar is not None:
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path


def picture_bytes(
    size: tuple[int, int] = (64, 48), fmt: str = "PNG", mode: str = "RGB", color: Any = (200, 80, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def upload(data: bytes, name: str = "photo.png") -> dict[str, Any]:
    """The multipart ``files`` for one picture in the ``image`` field."""
    return {"image": (name, data, "application/octet-stream")}


def expect_error(response: Any, status: int, code: str) -> str:
    """Assert the one JSON error shape with this status and code; the message, for further checks."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


def swap_predictor(client: AppClient, predictor: Callable[[np.ndarray], np.ndarray]) -> None:
    """Serve every loaded style with ``predictor`` instead of its model."""
    for entry in client.app.state.services.registry.entries.values():
        assert entry.loaded is not None
        entry.loaded = dataclasses.replace(entry.loaded, predictor=predictor)


def load_file(path: Path, **options: Any) -> Any:
    """A model file loaded and warmed as the registry would (small warm-up)."""
    return load_style(ModelFile(path, read_spec(path)), threads=1, warmup_side=32, **options)


@pytest.fixture(autouse=True)
def _job_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app a test starts keeps its jobs in the test's own folder, never in the checkout."""
    monkeypatch.setenv("ANIMEGAN_JOB_DIR", str(tmp_path / "jobs"))


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    """A weights folder with one random generator, style 'random'."""
    folder = tmp_path / "weights"
    folder.mkdir()
    save_random_generator(folder / "random.pt")
    return folder


@pytest.fixture
def settings_for(weights_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"weights_dir": weights_dir, "warmup_side": 32, "rate_limit_enabled": False}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client() -> Callable[[Settings], Any]:
    """Run the real app (lifespan included) behind an ``httpx.AsyncClient``."""

    def start(settings: Settings) -> Any:
        return serving(settings)

    return start


class AppClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` bound to one app, which tests can reach as ``.app``."""

    def __init__(self, app: Any) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self.app = app


class serving:
    """The real app, lifespan included, behind an ``AppClient``: ``async with serving(settings) as client``."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)

    async def __aenter__(self) -> AppClient:
        await self._lifespan.__aenter__()
        self._client = AppClient(self.app)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(*exc)


@pytest.fixture
async def client(make_client: Any, settings_for: Callable[..., Settings]) -> AsyncIterator[AppClient]:
    async with make_client(settings_for()) as running:
        yield running


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` with real weights and photos; a failure instead of a skip when CI requires them."""
    if (SHARED / "models" / "animeganv2_hayao.pt").is_file() and (SHARED / "photos").is_dir():
        return SHARED
    message = f"real weights and photos not found under {SHARED}"
    if os.environ.get("ANIMEGAN_REQUIRE_REAL_WEIGHTS") == "1":
        pytest.fail(message + " (ANIMEGAN_REQUIRE_REAL_WEIGHTS=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def memory_profiles(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``animegan-api memory-profile`` of the real ONNX styles at 512 and 2048 px, 2 threads, made once (~2.5 min)."""
    folder = tmp_path_factory.mktemp("memory-profiles")
    command = [sys.executable, "-m", "animegan_api", "memory-profile", "--weights-dir", str(shared / "models")]
    command += ["--out", str(folder), "--sides", "512", "2048", "--threads", "2", "--repeats", "1", "--models"]
    command += ["animeganv3_hayao.onnx", "animeganv3_shinkai.onnx", "animeganv3_cute.onnx"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return folder


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX exports of the seed-0 random generator, made once: NCHW, NHWC, and NHWC needing heights of 16k."""
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "nchw": save_onnx_generator(folder / "nchw.onnx"),
        "nhwc": save_onnx_generator(folder / "nhwc.onnx", nhwc=True),
        "nhwc16": save_onnx_generator(folder / "nhwc16.onnx", nhwc=True, multiple_of_16=True),
    }


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """``../shared/videos``: Big Buck Bunny (25 fps, 5.1 AAC) and carphone (29.97 fps); see its PROVENANCE.md."""
    folder = SHARED / "videos"
    if (folder / "bigbuckbunny.mp4").is_file() and (folder / "carphone_pristine.mp4").is_file():
        return folder
    message = f"the real test clips are not under {folder}"
    if os.environ.get("ANIMEGAN_REQUIRE_REAL_WEIGHTS") == "1":
        pytest.fail(message + " (ANIMEGAN_REQUIRE_REAL_WEIGHTS=1)")
    pytest.skip(message)
