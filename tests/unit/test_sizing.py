from __future__ import annotations

from pathlib import Path

from animegan_api.pictures.imaging import Sizes
from animegan_api.runtime.memory import LinearCost, MiB
from animegan_api.runtime.model import Generator
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.strip_memory import StripCost
from animegan_api.runtime.tiling import StripForward
from animegan_api.runtime.weights import StyleSpec
from animegan_api.serving.sizing import (
    FALLBACK,
    Need,
    largest_square_side,
    memory_need,
    picture_bytes,
    time_limit_side,
)


def _style(cost: LinearCost | StripCost | None, multiple: int = 4) -> LoadedStyle:
    spec = StyleSpec(name="s", file="s.pt", size_multiple=multiple)
    return LoadedStyle(spec, Path("s.pt"), predictor=lambda b: b, parameters=None, memory_bytes=0, load_s=0, cost=cost)


def _sizes(width: int, height: int) -> Sizes:
    return Sizes(original=(width * 2, height * 2), processed=(width, height), decoded_pixels=width * height * 4)


def test_a_need_is_the_forward_plus_the_pictures_beside_it() -> None:
    need = memory_need([_style(LinearCost(1000, 100.0))], _sizes(100, 50), keep_size=False)
    pixels = 100 * 50
    assert need.nbytes == 1000 + 100 * pixels + 4 * pixels + 3 * pixels + 12 * pixels  # alpha, input, batch


def test_a_small_forward_is_outweighed_by_its_answer_at_the_original_size() -> None:
    sizes = Sizes(original=(4000, 3000), processed=(200, 150), decoded_pixels=4000 * 3000)
    need = memory_need([_style(LinearCost(0, 10.0))], sizes, keep_size=True)
    phases = picture_bytes(4000 * 3000, 200 * 150, 4000 * 3000)
    assert need.nbytes == phases.answering > phases.decoding  # the resize to 4000x3000 and its encoding


def test_each_further_piece_holds_its_input_the_outputs_so_far_and_the_previous_batch() -> None:
    style, sizes, pixels = _style(LinearCost(0, 100.0)), _sizes(100, 50), 100 * 50
    one, three = memory_need([style], sizes, False), memory_need([style], sizes, False, pieces=3)
    assert three.nbytes - one.nbytes == (2 * 3 + 12 + 2 * 3) * pixels


def test_the_decoded_upload_is_let_go_before_the_forward() -> None:
    """A 4K photo shrunk to 256 px: its decode, not the small forward, is the request's peak."""
    big = Sizes(original=(3840, 2160), processed=(256, 144), decoded_pixels=3840 * 2160)
    need = memory_need([_style(LinearCost(0, 100.0))], big, keep_size=False)
    assert need.nbytes == 7 * 3840 * 2160 + 3 * 256 * 144
    assert picture_bytes(3840 * 2160, 256 * 144, 256 * 144).decoding == need.nbytes


def test_held_pixels_count_in_both_phases() -> None:
    style, sizes = _style(LinearCost(0, 100.0)), _sizes(100, 50)
    plain, held = memory_need([style], sizes, False), memory_need([style], sizes, False, held_bytes=7 * 1000)
    assert held.nbytes == plain.nbytes + 7 * 1000
    assert held.at_side(64) == plain.at_side(64) + 7 * 1000


def test_the_largest_side_fits_and_one_step_more_does_not() -> None:
    need = memory_need([_style(LinearCost(5_000_000, 900.0))], _sizes(1600, 900), keep_size=False)
    allowance = 400_000_000
    side = need.largest_side(allowance)
    assert side > 0 and side % 4 == 0
    assert need.at_side(side) <= allowance < need.at_side(side + 4)


def test_the_strip_forward_is_costed_from_its_shapes() -> None:
    cost = StripCost(StripForward(Generator()))
    small, large = cost.forward_bytes(1024, 576), cost.forward_bytes(2048, 1152)
    # bench/memory.py measured 468 and 1251 MiB: the prediction is above both, and not wildly so
    assert 468 << 20 < small < 800 << 20 and 1251 << 20 < large < 1600 << 20


def test_a_comparison_needs_its_most_demanding_style() -> None:
    small, large = _style(LinearCost(0, 100.0)), _style(LinearCost(0, 900.0))
    both = memory_need([small, large], _sizes(64, 64), keep_size=False)
    assert both.nbytes == memory_need([large], _sizes(64, 64), keep_size=False).nbytes


def test_an_unmeasured_style_is_costed_on_the_safe_side() -> None:
    assert memory_need([_style(None)], _sizes(64, 64), False).nbytes >= FALLBACK.forward_bytes(64, 64)


def test_a_square_side_is_bounded_by_the_setting() -> None:
    style = _style(LinearCost(0, 100.0))
    assert largest_square_side([style], 10**12, limit=2048) == 2048
    assert 0 < largest_square_side([style], 50 << 20, limit=2048) < 2048


def test_a_forward_longer_than_the_deadline_names_the_size_that_finishes() -> None:
    assert time_limit_side(0.0, 30, (512, 512), 4) is None  # not learned yet: nothing to refuse
    assert time_limit_side(1e-6, 30, (512, 512), 4) is None  # 0.8 s
    side = time_limit_side(1e-5, 30, (2048, 2048), 4)  # 126 s
    assert side is not None and 1e-5 * 3 * side * side <= 30 < 1e-5 * 3 * (side + 4) ** 2


def test_a_refusal_never_reads_as_if_the_need_fitted() -> None:
    need = Need(nbytes=2057 * MiB + 400 * 1024, at_side=lambda side: side * side * 500, multiple=8)
    text = need.refusal("at max_side 2048 this picture", 2057 * MiB - 400 * 1024, "request")
    assert text.startswith("at max_side 2048 this picture needs 2058 MiB, more than the 2056 MiB one request may have")
    assert text.endswith(f"the largest max_side that fits is {need.largest_side(2057 * MiB - 400 * 1024)}")
