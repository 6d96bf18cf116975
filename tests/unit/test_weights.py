from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from animegan_api.runtime.model import Generator
from animegan_api.runtime.pull import PullError, packaged_manifest, pull, read_manifest
from animegan_api.runtime.weights import (
    StyleSpec,
    WeightsError,
    discover,
    load_generator,
    read_spec,
    sha256_of,
)
from conftest import save_random_generator

REPO = Path(__file__).resolve().parents[2]


def test_strict_load_reproduces_the_saved_generator(tmp_path: Path) -> None:
    path = save_random_generator(tmp_path / "g.pt", seed=3)
    torch.manual_seed(3)
    original = Generator().eval()
    loaded = load_generator(path, read_spec(path))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(original(x), loaded(x))
    assert not loaded.training


def test_sidecar_upsampling_reaches_the_generator(tmp_path: Path) -> None:
    path = save_random_generator(
        tmp_path / "g.pt", sidecar={"name": "legacy", "upsample": "tf_legacy", "size_multiple": 8}
    )
    spec = read_spec(path)
    assert (spec.name, spec.upsample, spec.size_multiple) == ("legacy", "tf_legacy", 8)
    assert load_generator(path, spec).upsample == "tf_legacy"


def test_file_without_sidecar_gets_defaults_from_its_name(tmp_path: Path) -> None:
    spec = read_spec(save_random_generator(tmp_path / "my style!.pt"))
    assert spec.name == "my_style_"
    assert (spec.format, spec.upsample, spec.preprocess) == ("torch", "align_corners", "full")
    assert spec.size_multiple is None  # settled by a probe when the model loads (see test_styles)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"\x00garbage" * 100, "not a readable PyTorch checkpoint"),
    ],
)
def test_corrupt_file_is_reported_with_path_and_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=reason) as info:
        load_generator(path, read_spec(path))
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_truncated_checkpoint_is_reported(tmp_path: Path) -> None:
    good = save_random_generator(tmp_path / "good.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_generator(path, read_spec(path))


def test_wrong_keys_are_named(tmp_path: Path) -> None:
    state = Generator().state_dict()
    state.pop("out_layer.0.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "keys.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys: out_layer\.0\.weight; unexpected keys: extra\.weight"):
        load_generator(path, read_spec(path))


def test_wrong_shapes_are_named(tmp_path: Path) -> None:
    state = Generator().state_dict()
    state["out_layer.0.weight"] = torch.zeros(3, 16, 1, 1)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"wrong shapes: out_layer\.0\.weight"):
        load_generator(path, read_spec(path))


class Payload:
    """Any class instance: weights_only loading must refuse to unpickle it."""


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_generator(path, read_spec(path))


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="expected a state dict"):
        load_generator(path, read_spec(path))


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    state = Generator().state_dict()
    state["block_a.0.1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="non-finite"):
        load_generator(path, read_spec(path))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="file not found"):
        load_generator(tmp_path / "absent.pt", StyleSpec(name="absent", file="absent.pt"))


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [
        ('{"upsample": "nearest"}', "field 'upsample'"),
        ('{"size_multiple": 0}', "field 'size_multiple'"),
        ('{"layout": "NHWC"}', "field 'layout'"),
        ('{"format": "onnx"}', "field 'format'"),
        ('{"name": "../../etc/passwd"}', "field 'name'"),
        ("{not json", "unreadable sidecar"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_sidecar_names_file_and_field(tmp_path: Path, sidecar: str, reason: str) -> None:
    path = save_random_generator(tmp_path / "m.pt")
    (tmp_path / "m.pt.json").write_text(sidecar)
    with pytest.raises(WeightsError, match=reason) as info:
        read_spec(path)
    assert info.value.path.name == "m.pt.json"


def test_discover_returns_models_and_problems_separately(tmp_path: Path) -> None:
    save_random_generator(tmp_path / "b.pt")
    save_random_generator(tmp_path / "a.pt", sidecar={"name": "alpha"})
    save_random_generator(tmp_path / "c.pt")
    (tmp_path / "c.pt.json").write_text('{"upsample": "bogus"}')
    (tmp_path / "notes.txt").write_text("ignored")
    found, problems = discover(tmp_path)
    assert [m.spec.name for m in found] == ["alpha", "b"]
    assert [p.path.name for p in problems] == ["c.pt.json"]
    assert discover(tmp_path / "missing") == ([], [])


def test_repository_manifest_lists_the_official_checkpoints() -> None:
    specs = {s.name: s for s in read_manifest(packaged_manifest())}
    assert set(specs) == {"face_paint_512_v2", "face_paint_512_v1", "paprika", "celeba_distill"}
    for spec in specs.values():
        assert spec.url == f"https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{spec.file}"
        assert "non-commercial" in (spec.license or "")


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def _spec(url: str, **extra: object) -> StyleSpec:
    return StyleSpec.model_validate({"name": "pulled", "file": "pulled.pt", "url": url, **extra})


def test_pull_downloads_verifies_and_writes_a_sidecar(http_folder: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_folder
    source = save_random_generator(root / "model.pt")
    dest = tmp_path / "weights"
    written = pull([_spec(f"{base}/model.pt", sha256=sha256_of(source), upsample="tf_legacy")], dest)
    assert written == [dest / "pulled.pt"]
    assert sha256_of(dest / "pulled.pt") == sha256_of(source)
    sidecar = json.loads((dest / "pulled.pt.json").read_text())
    assert sidecar["name"] == "pulled" and sidecar["upsample"] == "tf_legacy"
    assert sorted(p.name for p in dest.iterdir()) == ["pulled.pt", "pulled.pt.json"]


def test_pull_checksum_mismatch_leaves_nothing(http_folder: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_folder
    save_random_generator(root / "model.pt")
    dest = tmp_path / "weights"
    with pytest.raises(PullError, match="checksum mismatch"):
        pull([_spec(f"{base}/model.pt", sha256="0" * 64)], dest)
    assert list(dest.iterdir()) == []


def test_pull_of_a_non_model_leaves_nothing(http_folder: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_folder
    (root / "model.pt").write_text("<html>not found</html>")
    dest = tmp_path / "weights"
    with pytest.raises(PullError, match="not a usable model"):
        pull([_spec(f"{base}/model.pt")], dest)
    assert list(dest.iterdir()) == []


def test_pull_offline_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "weights"
    with pytest.raises(PullError, match=r"download from .* failed"):
        pull([_spec(f"http://127.0.0.1:{port}/model.pt")], dest, timeout_s=5)
    assert list(dest.iterdir()) == []
