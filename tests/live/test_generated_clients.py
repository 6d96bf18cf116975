"""Clients generated from the live /openapi.json (openapi-python-client; openapi-typescript with openapi-fetch)
send files and read pictures, headers and typed errors."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from live import Server

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
STYLE = "animeganv3_shinkai"
TYPESCRIPT = Path(__file__).parent / "typescript"  # package.json, the generator script and the program
# The generator takes only JSON-like bodies by default: pictures, videos and ZIPs are read as bytes.
CONFIG = "content_type_overrides:\n" + "".join(
    f"  {media}: application/octet-stream\n"
    for media in ("image/png", "image/jpeg", "image/webp", "video/mp4", "application/zip")
)


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("client")
    weights = folder / "weights"
    weights.mkdir()
    for name in (STYLE + ".onnx", STYLE + ".onnx.json"):
        (weights / name).symlink_to((shared / "models" / name).resolve())
    running = Server(weights, folder / "server.log", "--default-style", STYLE)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client_package(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``openapi-python-client generate`` from the running service's document, importable as a package."""
    folder = tmp_path_factory.mktemp("generated")
    config = folder / "config.yaml"
    config.write_text(CONFIG)
    tools = Path(sys.executable).parent
    command = [str(tools / "openapi-python-client"), "generate", "--url", server.url + "/openapi.json"]
    command += ["--config", str(config), "--meta", "none", "--output-path", str(folder / "animegan_client")]
    environment = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # nothing of the document was left out
    sys.path.insert(0, str(folder))
    try:
        yield "animegan_client"
    finally:
        sys.path.remove(str(folder))


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_the_generated_client_uploads_photos_and_gets_pictures_and_headers(
    server: Server, shared: Path, client_package: str
) -> None:
    client = _module(client_package, "client").Client(base_url=server.url, timeout=120)
    types, models = _module(client_package, "types"), _module(client_package, "models")
    transform = _module(client_package, "api.inference.transform_v1_transform_post")
    avatar = _module(client_package, "api.inference.avatar_v1_avatar_post")
    photo = (shared / "photos" / "landscape_01.jpg").read_bytes()

    answer = transform.sync_detailed(
        client=client,
        body=models.BodyTransformV1TransformPost(image=types.File(io.BytesIO(photo), "landscape.jpg"), max_side=256),
    )
    assert answer.status_code == 200 and isinstance(answer.parsed, types.File)
    assert Image.open(answer.parsed.payload).size == (256, 128)
    assert answer.headers["X-Style"] == STYLE

    face = (shared / "photos" / "face_01.jpg").read_bytes()
    answer = avatar.sync_detailed(
        client=client, body=models.BodyAvatarV1AvatarPost(image=types.File(io.BytesIO(face), "face.jpg"), size=128)
    )
    assert answer.status_code == 200 and isinstance(answer.parsed, types.File)
    assert Image.open(answer.parsed.payload).size == (128, 128)
    assert int(answer.headers["X-Faces-Found"]) >= 1

    refused = transform.sync_detailed(
        client=client,
        body=models.BodyTransformV1TransformPost(image=types.File(io.BytesIO(photo), "landscape.jpg"), max_side=99999),
    )
    assert refused.status_code == 422 and isinstance(refused.parsed, models.ErrorBody)
    assert refused.parsed.error.code == "invalid_request"
    assert [field.field for field in refused.parsed.error.fields] == ["max_side"]


@pytest.fixture(scope="module")
def typescript_program(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript program beside types generated from the running service, type-checked and built."""
    node_modules = TYPESCRIPT / "node_modules"
    if shutil.which("node") is None or not node_modules.is_dir():
        message = f"needs Node.js and `npm ci --prefix {TYPESCRIPT}` (make test runs it)"
        if os.environ.get("ANIMEGAN_REQUIRE_NODE") == "1":
            pytest.fail(message + " and ANIMEGAN_REQUIRE_NODE=1")
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("typescript")
    for name in ("package.json", "tsconfig.json", "generate.mjs", "main.ts"):
        shutil.copy(TYPESCRIPT / name, folder / name)
    (folder / "node_modules").symlink_to(node_modules)
    _node(folder, "node", "generate.mjs", server.url, "schema.d.ts")
    _node(folder, str(node_modules / ".bin" / "tsc"), "-p", ".")  # tsconfig.json: strict
    return folder / "build" / "main.js"


def _node(folder: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_typescript_client_type_checks_and_runs_against_the_service(
    server: Server, shared: Path, typescript_program: Path
) -> None:
    photo, face = (str((shared / "photos" / name).resolve()) for name in ("landscape_01.jpg", "face_01.jpg"))
    seen = json.loads(_node(typescript_program.parent, "node", str(typescript_program), server.url, photo, face))

    assert seen["transform"] == {"status": 200, "size": [256, 128], "style": STYLE}
    assert seen["avatar"]["size"] == [128, 128] and seen["avatar"]["facesFound"] >= 1
    assert seen["refused"]["status"] == 422 and seen["refused"]["code"] == "invalid_request"
    assert [field["field"] for field in seen["refused"]["fields"]] == ["max_side"]
    assert seen["job"]["status"] == "succeeded" and seen["job"]["location"].startswith("/v1/jobs/job_")
    assert seen["job"]["size"] == [128, 64]


def test_the_typescript_types_say_what_the_service_sends(typescript_program: Path) -> None:
    types = (typescript_program.parent.parent / "schema.d.ts").read_text()
    assert "image: Blob;" in types and "file: Blob;" in types  # uploads are files, not strings
    assert '"image/png": Blob;' in types and '"video/mp4": Blob;' in types
    assert '"X-Style": string;' in types and '"X-Faces-Found": number;' in types
    assert "HTTPValidationError" not in types
