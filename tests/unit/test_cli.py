from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from animegan_api.cli import main
from animegan_api.cli.health import listening_address
from animegan_api.runtime.pull import packaged_manifest
from conftest import save_random_generator


def test_styles_lists_found_models(weights_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_random_generator(weights_dir / "b.pt", sidecar={"name": "legacy", "upsample": "tf_legacy"})
    assert main(["styles", "--weights-dir", str(weights_dir), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"random", "legacy"}
    assert rows["legacy"]["upsample"] == "tf_legacy" and rows["random"]["bytes"] > 8_000_000


def test_styles_reports_bad_sidecars_with_exit_1(weights_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (weights_dir / "random.pt.json").write_text('{"layout": "NHWC"}')
    assert main(["styles", "--weights-dir", str(weights_dir)]) == 1
    assert "field 'layout'" in capsys.readouterr().out


def test_weights_pull_offline_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [{"name": "x", "file": "x.pt", "url": f"http://127.0.0.1:{port}/x.pt"}]}))
    dest = tmp_path / "weights"
    assert main(["weights", "pull", "--manifest", str(manifest), "--weights-dir", str(dest), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "download from" in err and "needs internet access" in err
    assert list(dest.iterdir()) == []


def test_weights_pull_unknown_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "pull", "nope", "--manifest", str(packaged_manifest())]) == 2
    assert "known: face_paint_512_v2" in capsys.readouterr().err


def test_serve_rejects_a_bad_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANIMEGAN_MAX_QUEUE", "-3")
    assert main(["serve"]) == 2
    assert "ANIMEGAN_MAX_QUEUE" in capsys.readouterr().err


def test_weights_pull_finds_the_packaged_manifest_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no weights/manifest.json here: the one inside the package is used
    assert main(["weights", "pull", "nope", "--weights-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unreadable manifest" not in error
    assert "not in" in error and "face_paint_512_v2" in error


def _processes(proc: Path, *commands: list[str]) -> Path:
    """A fake /proc whose PIDs 1, 2, ... run ``commands``."""
    for pid, argv in enumerate(commands, start=1):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(part.encode() for part in argv) + b"\0")
    return proc


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["animegan-api", "serve", "--host", "0.0.0.0", "--port", "8123"], ("127.0.0.1", 8123)),
        (["/opt/venv/bin/python3", "-m", "animegan_api", "serve", "--port=9000"], ("127.0.0.1", 9000)),
        (["animegan-api", "serve", "--host", "10.1.2.3"], ("10.1.2.3", 8000)),
        (["sleep", "infinity", "serve"], ("127.0.0.1", 8000)),
    ],
)
def test_the_healthcheck_finds_the_port_the_server_was_given(
    tmp_path: Path, argv: list[str], address: tuple[str, int]
) -> None:
    proc = _processes(tmp_path / "proc", ["catatonit", "--"], argv)
    assert listening_address(("0.0.0.0", 8000), proc) == address


def test_the_healthcheck_exits_1_where_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert main(["healthcheck", "--port", str(port), "--timeout", "1"]) == 1
