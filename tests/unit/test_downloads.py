"""Which bytes a ``Range`` header asks of a result, and how its download is named (pure functions)."""

from __future__ import annotations

import pytest

from animegan_api.http.downloads import disposition, requested_span
from animegan_api.http.errors import ApiError


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=990-5000", (990, 1000)),
        (" bytes = 5 - 9 ", (5, 10)),
        (None, None),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file, as RFC 9110 allows
        ("items=0-9", None),
        ("bytes=9-5", None),
        ("bytes=-", None),
        ("bytes=x-y", None),
    ],
)
def test_one_range_is_served_and_any_other_header_is_ignored(header: str | None, span: tuple[int, int] | None) -> None:
    assert requested_span(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        requested_span(header, 1000)
    assert refused.value.status == 416 and refused.value.headers == {"Content-Range": "bytes */1000"}


def test_a_name_outside_ascii_is_sent_in_its_utf8_form() -> None:
    assert disposition("inline", "clip_anime.mp4") == 'inline; filename="clip_anime.mp4"'
    assert disposition("attachment", "été_anime.zip") == "attachment; filename*=utf-8''%C3%A9t%C3%A9_anime.zip"
