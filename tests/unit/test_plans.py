"""Plans priced from the header alone: every forward's size, and the memory of the most demanding one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animegan_api.pictures.imaging import Sizes
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.weights import StyleSpec
from animegan_api.serving.plans import Faces, Output, avatar_plan, compare_plan, price, transform_plan

HEADER = Sizes(original=(4000, 3000), processed=(4000, 3000), decoded_pixels=12_000_000)


def _style(name: str, multiple: int, preprocess: str = "full") -> LoadedStyle:
    spec = StyleSpec(name=name, file=f"{name}.onnx", size_multiple=multiple, preprocess=preprocess)  # type: ignore[arg-type]
    return LoadedStyle(spec, Path(spec.file), lambda batch: np.zeros_like(batch), None, 0, 0.0)


def test_transform_is_one_forward_at_the_styles_size_rule() -> None:
    charged = price(transform_plan(_style("v3", 16), 512, Output()), HEADER, max_faces=8)
    assert [(style.spec.name, size) for style, size in charged.forwards] == [("v3", (512, 384))]
    assert charged.sizes.processed == (512, 384) and charged.sizes.original == (4000, 3000)


def test_compare_is_one_forward_per_style_and_memory_for_the_largest() -> None:
    plan = compare_plan([_style("v2", 4), _style("v3", 16), _style("face", 4, "face")], 500, Output())
    charged = price(plan, HEADER, max_faces=8)
    assert [size for _, size in charged.forwards] == [(500, 372), (496, 368), (500, 500)]
    assert charged.sizes.processed == (500, 500)  # the face square is the largest input
    assert charged.held_bytes > 0 and charged.sizes.decoded_pixels == HEADER.decoded_pixels  # its cut is held
    assert len(charged.styles) == 3


def test_a_sheet_of_every_face_is_one_forward_until_they_are_counted() -> None:
    plan = avatar_plan(_style("v3", 16), 256, Faces("all"), Output())
    before, after = price(plan, HEADER, max_faces=8), price(plan, HEADER, max_faces=8, found=3)
    assert [size for _, size in before.forwards] == [(256, 256)]
    assert [size for _, size in after.forwards] == [(256, 256)] * 3
    assert (before.sizes, before.held_bytes) == (after.sizes, after.held_bytes)  # reserved once, for max_faces
    assert len(price(plan, HEADER, max_faces=2, found=5).forwards) == 2


def test_a_single_avatar_is_one_forward_whatever_the_faces() -> None:
    plan = avatar_plan(_style("v2", 4), 300, Faces(1, 0.6), Output(keep_size=True))
    charged = price(plan, HEADER, max_faces=8, found=4)
    assert [size for _, size in charged.forwards] == [(300, 300)]
    assert charged.sizes.original == (300, 300) and charged.keep_size and charged.size_field == "size"
