"""The app's services: started by the lifespan (models loaded and warmed, threads fixed), closed at shutdown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.http.app import create_app, services_of
from animegan_api.runtime.weights import WeightsError


async def test_lifespan_loads_warms_and_tears_down(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(threads=1, workers=2, max_pixels=12_345_678))
    async with app.router.lifespan_context(app):
        assert Image.MAX_IMAGE_PIXELS == 12_345_678  # Pillow's bomb guard follows the setting
        services = services_of(app)
        assert services is not None and services.ready is True
        assert services.registry.names == ["random"]
        loaded = services.registry.entries["random"].loaded
        assert loaded.load_s > 0 and loaded.size_multiple == 4
        assert torch.get_num_threads() == 1
        assert services.engine.workers == 2
        ticket = services.engine.admit()
    assert services.ready is False
    with ticket, pytest.raises(RuntimeError, match="shutdown"):
        await services.engine.run(ticket, print)  # the pool is shut down


async def test_configured_default_style_must_exist(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(default_style="missing"))
    with pytest.raises(WeightsError, match="default style 'missing'"):
        async with app.router.lifespan_context(app):
            pass


async def test_one_bad_file_does_not_block_the_others(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    (weights_dir / "zzz.pt").write_bytes(b"\x00" * 10)
    async with make_client(settings_for()) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert client.app.state.services.registry.entries["zzz"].error is not None
        assert client.app.state.services.registry.names == ["random"]
