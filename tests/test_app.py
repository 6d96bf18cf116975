from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from animegan_api.app import create_app
from animegan_api.config import Settings
from animegan_api.weights import WeightsError


def test_creating_the_app_loads_nothing(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for())
    assert app.state.ready is False
    assert app.state.registry.entries == {}
    assert not hasattr(app.state, "engine")


async def test_lifespan_loads_warms_and_tears_down(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(threads=1, workers=2, max_pixels=12_345_678))
    async with app.router.lifespan_context(app):
        assert Image.MAX_IMAGE_PIXELS == 12_345_678  # Pillow's bomb guard follows the setting
        assert app.state.ready is True
        assert app.state.registry.names == ["random"]
        loaded = app.state.registry.entries["random"].loaded
        assert loaded.load_s > 0 and loaded.size_multiple == 4
        assert torch.get_num_threads() == 1
        engine = app.state.engine
        assert engine.workers == 2
    assert app.state.ready is False
    with pytest.raises(RuntimeError):
        engine._executor.submit(print)  # shut down


async def test_configured_default_style_must_exist(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(default_style="missing"))
    with pytest.raises(WeightsError, match="default style 'missing'"):
        async with app.router.lifespan_context(app):
            pass


async def test_one_bad_file_does_not_block_the_others(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    (weights_dir / "zzz.pt").write_bytes(b"\x00" * 10)
    async with make_client(settings_for()) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert client.app.state.registry.entries["zzz"].error is not None
        assert client.app.state.registry.names == ["random"]
