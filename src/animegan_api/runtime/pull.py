"""``animegan-api weights pull``: download the official checkpoints the packaged manifest lists.

The manifest ships inside the package, so an installed wheel (or the
container) finds it from any folder. Downloads are verified before they are
moved into the weights folder: a broken file can never be picked up by a
running or starting service.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from animegan_api.runtime.weights import (
    StyleSpec,
    WeightsError,
    describe_validation,
    sha256_of,
    sidecar_path,
    verify_loadable,
)

__all__ = ["PullError", "packaged_manifest", "pull", "read_manifest"]


def packaged_manifest() -> Path:
    """The manifest installed with the package (``animegan_api/runtime/manifest.json``)."""
    return Path(str(resources.files("animegan_api.runtime").joinpath("manifest.json")))


class PullError(Exception):
    """A download that failed; nothing was left behind in the weights folder."""


def read_manifest(path: Path) -> list[StyleSpec]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["models"]
        return [StyleSpec.model_validate(entry) for entry in entries]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise WeightsError(path, f"unreadable manifest: {exc}") from exc
    except ValidationError as exc:
        raise WeightsError(path, describe_validation(exc)) from exc


def pull(
    specs: Iterable[StyleSpec],
    dest: Path,
    *,
    timeout_s: float = 60.0,
    on_done: Callable[[StyleSpec, Path, str], None] | None = None,
) -> list[Path]:
    """Download each model, verify it, and move it into ``dest`` with its sidecar.

    The file is written beside its final name and renamed only after the
    checksum (when known) and a strict load pass, so a broken download can
    never be picked up by a running or starting service.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        if not spec.url:
            raise PullError(f"{spec.name}: the manifest gives no download URL")
        target = dest / spec.file
        digest = _download_verified(spec, target, timeout_s)
        sidecar_path(target).write_text(
            spec.model_dump_json(indent=2, exclude_none=True, exclude={"url"}) + "\n", encoding="utf-8"
        )
        written.append(target)
        if on_done:
            on_done(spec, target, digest)
    return written


def _download_verified(spec: StyleSpec, target: Path, timeout_s: float) -> str:
    assert spec.url, "pull() checks every spec has a URL"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=timeout_s) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        digest = sha256_of(tmp)
        if spec.sha256 and digest != spec.sha256:
            raise PullError(f"{spec.name}: checksum mismatch (expected {spec.sha256}, got {digest})")
        verify_loadable(tmp, spec)
        os.replace(tmp, target)
        return digest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise PullError(f"{spec.name}: download from {spec.url} failed: {getattr(exc, 'reason', exc)}") from exc
    except WeightsError as exc:
        raise PullError(f"{spec.name}: downloaded file is not a usable model: {exc.reason}") from exc
    finally:
        tmp.unlink(missing_ok=True)
