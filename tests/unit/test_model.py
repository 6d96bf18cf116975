from __future__ import annotations

import pytest
import torch

from animegan_api.runtime.model import Generator, tf_legacy_resize


def test_state_dict_has_the_published_key_format() -> None:
    keys = list(Generator().state_dict())
    assert len(keys) == 77
    assert keys[0] == "block_a.0.1.weight"
    assert keys[-1] == "out_layer.0.weight"
    assert "block_c.1.layers.1.1.bias" in keys


def test_tf_legacy_doubling_matches_its_definition_by_hand() -> None:
    # Output pixel i samples input coordinate i/2; the last row and column clamp to the edge.
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    expected = torch.tensor(
        [
            [0.0, 0.5, 1.0, 1.0],
            [1.0, 1.5, 2.0, 2.0],
            [2.0, 2.5, 3.0, 3.0],
            [2.0, 2.5, 3.0, 3.0],
        ]
    )
    assert torch.allclose(tf_legacy_resize(x, (4, 4))[0, 0], expected)


def test_tf_legacy_any_ratio_matches_its_definition_by_hand() -> None:
    # 3 -> 5 samples coordinates 0, 0.6, 1.2, 1.8, 2.4 of [0, 10, 20].
    x = torch.tensor([[[[0.0, 10.0, 20.0]]]])
    assert torch.allclose(tf_legacy_resize(x, (1, 5))[0, 0, 0], torch.tensor([0.0, 6.0, 12.0, 18.0, 20.0]))


def test_tf_legacy_fast_doubling_equals_the_general_form() -> None:
    x = torch.randn(2, 5, 7, 9)
    fast = tf_legacy_resize(x, (14, 18))
    general = tf_legacy_resize(tf_legacy_resize(x, (14, 9)), (14, 18))  # one axis at a time takes the general path
    assert torch.allclose(fast, general, atol=1e-5)


def test_the_two_upsampling_conventions_differ() -> None:
    torch.manual_seed(0)
    aligned = Generator("align_corners").eval()
    legacy = Generator("tf_legacy").eval()
    legacy.load_state_dict(aligned.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        assert not torch.allclose(aligned(x), legacy(x), atol=1e-3)


@pytest.mark.parametrize("upsample", ["align_corners", "tf_legacy"])
@pytest.mark.parametrize("size", [(32, 32), (40, 24), (30, 42)])
def test_output_has_the_input_size_and_range(upsample: str, size: tuple[int, int]) -> None:
    generator = Generator(upsample).eval()  # type: ignore[arg-type]
    with torch.inference_mode():
        out = generator(torch.rand(1, 3, *size) * 2 - 1)
    assert out.shape == (1, 3, *size)
    assert out.abs().max() <= 1.0


def test_unknown_upsampling_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="upsample"):
        Generator("nearest")  # type: ignore[arg-type]
