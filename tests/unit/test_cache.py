from __future__ import annotations

from animegan_api.serving.cache import CachedResult, ResultCache, cache_key


def _result(size: int, style: str = "s") -> CachedResult:
    return CachedResult(b"x" * size, "image/png", (style,))


def test_hits_return_what_was_stored() -> None:
    cache = ResultCache(1000)
    cache.put("a", _result(10, "hayao"))
    assert cache.get("a") == _result(10, "hayao")
    assert cache.get("b") is None


def test_bound_is_in_bytes_and_the_least_recently_used_goes_first() -> None:
    cache = ResultCache(800)
    for key in "abcd":
        cache.put(key, _result(100))
    assert cache.get("a") is not None  # now the most recent
    for key in "efgh":
        cache.put(key, _result(100))
    assert cache.size_bytes == 800 and len(cache) == 8
    cache.put("i", _result(100))
    assert cache.get("b") is None and cache.get("a") is not None
    assert cache.size_bytes <= 800


def test_replacing_a_key_does_not_count_it_twice() -> None:
    cache = ResultCache(1000)
    cache.put("a", _result(100))
    cache.put("a", _result(50))
    assert cache.size_bytes == 50 and len(cache) == 1


def test_one_huge_result_does_not_flush_the_rest() -> None:
    cache = ResultCache(800)
    cache.put("small", _result(100))
    cache.put("huge", _result(101))  # above max_bytes / 8
    assert cache.get("huge") is None and cache.get("small") is not None


def test_zero_bytes_means_off() -> None:
    cache = ResultCache(0)
    cache.put("a", _result(1))
    assert not cache.enabled and cache.get("a") is None


def test_clear_forgets_everything() -> None:
    cache = ResultCache(1000)
    cache.put("a", _result(10))
    cache.clear()
    assert cache.get("a") is None and cache.size_bytes == 0


def test_key_covers_the_bytes_and_every_parameter() -> None:
    base = cache_key(b"photo", style="hayao", side=512, format="png")
    assert base == cache_key(b"photo", format="png", side=512, style="hayao")
    assert base != cache_key(b"photo2", style="hayao", side=512, format="png")
    assert base != cache_key(b"photo", style="shinkai", side=512, format="png")
    assert base != cache_key(b"photo", style="hayao", side=256, format="png")
    assert base != cache_key(b"photo", style="hayao", side=512, format="webp")
