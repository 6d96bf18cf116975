"""Decode, predict, encode: the one path from an upload to a picture, for the API and the CLI alike.

The steps are plain functions (:func:`decode`, :func:`encode`, and
:func:`convert` chaining them around a predictor), in the spirit of LitServe's
decode/predict/encode contract. :class:`Pipeline` runs the same steps for the
service: pictures on the image pool, the forward through the engine's
admission and deadlines, the result cache around both, and every failure
turned into the service's typed error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from animegan_api.failures import Refusal
from animegan_api.pictures import imaging
from animegan_api.runtime.memory import MiB, give_back
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.cache import CachedResult, ResultCache, cache_key
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.sizing import memory_need, time_limit_side
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket, TooLarge

T = TypeVar("T")
log = logging.getLogger(__name__)

GIVE_BACK_PIXELS = 1_000_000
_IMAGE_ERROR_CODES: dict[type[imaging.ImageError], str] = {
    imaging.UnsupportedImage: "unsupported_image",
    imaging.CorruptImage: "corrupt_image",
    imaging.ImageTooLarge: "image_too_large",
}


@dataclass(frozen=True)
class Options:
    """What the caller asked of the output."""

    max_side: int
    keep_size: bool = False
    format: imaging.OutputFormat = "png"
    quality: int = 90


def decode(
    data: bytes, style: LoadedStyle | None, max_side: int, max_pixels: int
) -> tuple[imaging.Prepared, np.ndarray]:
    """Decode for one style's size rule and preprocessing (or as-is, without a style)."""
    prepared = imaging.prepare(
        data,
        max_pixels=max_pixels,
        max_side=max_side,
        multiple=style.size_multiple if style else 1,
        face_crop=style is not None and style.spec.preprocess == "face",
    )
    return prepared, imaging.to_batch(prepared.rgb)


def encode(output: np.ndarray, prepared: imaging.Prepared, options: Options) -> bytes:
    return imaging.render(output, prepared, options.keep_size, options.format, options.quality)


def convert(data: bytes, style: LoadedStyle, options: Options, max_pixels: int) -> bytes:
    """The whole conversion in the calling thread: what ``animegan-api convert`` runs per file."""
    prepared, batch = decode(data, style, options.max_side, max_pixels)
    return encode(style.predictor(batch), prepared, options)


@dataclass(frozen=True)
class Converted:
    """A finished picture and the facts the route reports about it."""

    body: bytes
    media_type: str
    style: str
    timing: dict[str, float]
    cache: str | None
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def cached(cls, hit: CachedResult, started: float) -> Converted:
        timing = {"cache": time.perf_counter() - started}
        return cls(hit.body, hit.media_type, hit.style, timing, "hit", headers=dict(hit.headers))


class ImagePool:
    """A few threads for decoding and encoding, apart from the event loop and the model's threads.

    Few enough that a burst neither oversubscribes the cores nor fans out into
    dozens of malloc arenas holding large pictures.
    """

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="animegan-image")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Pipeline:
    """The service's decode -> predict -> encode, with admission, deadlines, cache and metrics."""

    def __init__(
        self, engine: InferenceEngine, images: ImagePool, cache: ResultCache, metrics: Metrics, max_pixels: int
    ) -> None:
        self.engine, self.images, self.cache, self.metrics = engine, images, cache, metrics
        self.max_pixels = max_pixels

    async def transform(
        self,
        ticket: Ticket,
        style: LoadedStyle,
        data: bytes,
        options: Options,
        client_gone: Callable[[], Awaitable[object]],
    ) -> Converted:
        started = time.perf_counter()
        media_type = imaging.MEDIA_TYPES[options.format]
        key = await self.key_for(data, style, options)
        if key and (hit := self.lookup(key)):
            return Converted.cached(hit, started)
        plan = await self.plan(data, style, options.max_side)
        waited = await self.admit(ticket, [style], plan, options, client_gone)
        prepared, batch = await self._decode(data, style, options.max_side)
        decoded = time.perf_counter()
        output = await self.predict(ticket, style, batch, client_gone())
        encode_started = time.perf_counter()
        body = await self.images.run(encode, output, prepared, options)
        del output, batch
        await self.give_back(prepared)
        timing = {
            "decode": decoded - started - waited,
            "queue": waited + ticket.queue_s,
            "inference": ticket.inference_s,
            "encode": time.perf_counter() - encode_started,
        }
        if key:
            self.cache.put(key, CachedResult(body, media_type, style.spec.name))
        out_size = prepared.original_size if options.keep_size else prepared.rgb.size
        return Converted(
            body, media_type, style.spec.name, timing, "miss" if key else None, prepared.original_size, out_size
        )

    async def compare(
        self,
        ticket: Ticket,
        styles: list[LoadedStyle],
        data: bytes,
        options: Options,
        client_gone: Callable[[], Awaitable[object]],
    ) -> bytes:
        """The original and one tile per style, as one captioned sheet."""
        await self.admit(ticket, styles, await self.plan(data, styles[0], options.max_side), options, client_gone)
        original, _ = await self._decode(data, None, options.max_side)
        tiles: list[tuple[str, Image.Image]] = [("original", original.rgb)]
        for style in styles:
            _, batch = await self._decode(data, style, options.max_side)
            output = await self.predict(ticket, style, batch, client_gone())
            tiles.append(
                (style.spec.display_name or style.spec.name, await self.images.run(imaging.from_output, output[0]))
            )
        return await self.images.run(_sheet, tiles, original.rgb.size, options)

    async def admit(
        self,
        ticket: Ticket,
        styles: list[LoadedStyle],
        plan: imaging.Plan,
        options: Options,
        client_gone: Callable[[], Awaitable[object]],
        field: str = "max_side",
        forwards: int = 1,
    ) -> float:
        """Refuse what can never finish, fit, or get its turn in time; reserve its memory. Returns seconds waited.

        ``field`` names the request's size parameter in the refusal's advice;
        ``forwards`` is how many forwards each style runs (faces on a sheet).
        """
        width, height = plan.processed
        for style in styles:
            if style.warm_timing:  # a cold start's first burst is predicted too, not only what follows it
                self.engine.speed.seed(style.predictor, *style.warm_timing)
            rate = self.engine.speed.expected_s(style.predictor, 1)
            if (side := time_limit_side(rate, ticket.timeout_s, plan, style.size_multiple)) is not None:
                message = f"{style.spec.name} would need longer than the {ticket.timeout_s:g} s deadline"
                raise Refusal("too_large_for_deadline", f"{message}; the largest {field} that finishes is {side}")
        own = forwards * sum(self.engine.speed.cautious_s(style.predictor, 3 * width * height) for style in styles)
        self._check_turn(ticket, own)
        ticket.predicted_s = own
        need = memory_need(styles, plan, options.keep_size)
        started = time.perf_counter()
        try:
            await self.engine.reserve(ticket, need.nbytes, client_gone)
        except TooLarge:
            capacity = self.engine.budget.capacity if self.engine.budget else 0
            message = (
                f"at {field} {options.max_side} this picture needs {need.nbytes / MiB:.0f} MiB, more than the "
                f"{capacity / MiB:.0f} MiB one request may have; the largest {field} that fits is "
                f"{need.largest_side(capacity)}"
            )
            raise Refusal("too_large_for_memory", message) from None
        except (DeadlineExceeded, ClientGone) as exc:
            raise self._waiting_error(exc, ticket) from None
        return time.perf_counter() - started

    async def plan(self, data: bytes, style: LoadedStyle | None, max_side: int) -> imaging.Plan:
        """The upload's sizes from its header (as-is without a style), or its typed error."""
        face = style is not None and style.spec.preprocess == "face"
        multiple = style.size_multiple if style else 1
        return await self.images.run(
            checked,
            lambda: imaging.plan(
                data, max_pixels=self.max_pixels, max_side=max_side, multiple=multiple, face_crop=face
            ),
        )

    def _check_turn(self, ticket: Ticket, own_s: float) -> None:
        """503 now, with the predicted wait as Retry-After, for a request the work ahead of it would make late.

        One whose cautious estimate alone is over its deadline (the average fits, or it would be 413 by now)
        is let through: waiting would not help it, and the slot's own check still stops a hopeless forward.
        """
        ahead = self.engine.backlog_s(besides=ticket)
        if own_s <= 0 or own_s > ticket.remaining() or ahead + own_s <= ticket.remaining():
            return
        retry = max(1, math.ceil(ahead + own_s - ticket.timeout_s))
        message = (
            f"the service is busy: this request's turn would come in about {ahead:.1f} s and its model time is "
            f"{own_s:.1f} s, past its {ticket.timeout_s:g} s deadline; retry in {retry} s"
        )
        raise Refusal("overloaded", message, {"Retry-After": str(retry)})

    def _waiting_error(self, exc: Exception, ticket: Ticket) -> Refusal:
        if isinstance(exc, ClientGone):
            log.info("client disconnected while queued; inference skipped")
            return Refusal("client_closed_request", "the client disconnected before inference")
        return Refusal("deadline_exceeded", f"no result within {ticket.timeout_s:g} s")

    async def give_back(self, prepared: imaging.Prepared) -> None:
        """After a large picture, hand the allocator's freed memory back so idle memory returns to its floor."""
        width, height = prepared.original_size
        if width * height >= GIVE_BACK_PIXELS or prepared.rgb.width * prepared.rgb.height >= GIVE_BACK_PIXELS:
            await self.images.run(give_back)

    async def _decode(
        self, data: bytes, style: LoadedStyle | None, max_side: int
    ) -> tuple[imaging.Prepared, np.ndarray]:
        return await self.images.run(checked, decode, data, style, max_side, self.max_pixels)

    async def predict(
        self, ticket: Ticket, style: LoadedStyle, batch: np.ndarray, client_gone: Awaitable[object]
    ) -> np.ndarray:
        key = (id(style.predictor), batch.shape[1:])
        try:
            output = await self.engine.run_batch(ticket, style.predictor, batch, key=key, client_gone=client_gone)
        except (DeadlineExceeded, ClientGone) as exc:
            raise self._waiting_error(exc, ticket) from None
        except Exception as exc:
            log.exception("inference failed for style %s", style.spec.name)
            raise Refusal("inference_failed", f"the model failed on this picture ({type(exc).__name__})") from exc
        self.metrics.observe_inference(style.spec.name, ticket.queue_s, ticket.inference_s)
        return output

    async def key_for(self, data: bytes, style: LoadedStyle, options: Options, **extra: object) -> str | None:
        """The upload's cache key (hashed off the event loop), or None with the cache off."""
        if not self.cache.enabled:
            return None
        params: dict[str, Any] = {
            "style": style.spec.name,
            "model": str(style.path),
            "side": options.max_side,
            "keep_size": options.keep_size,
            "format": options.format,
            "quality": options.quality,
            **extra,
        }
        return await self.images.run(lambda: cache_key(data, **params))

    def lookup(self, key: str) -> CachedResult | None:
        hit = self.cache.get(key)
        self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
        return hit


def checked(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with an undecodable picture turned into the service's typed error."""
    try:
        return fn(*args)
    except imaging.ImageError as exc:
        raise Refusal(_IMAGE_ERROR_CODES[type(exc)], str(exc)) from exc


def _sheet(tiles: list[tuple[str, Image.Image]], size: tuple[int, int], options: Options) -> bytes:
    return imaging.encode(imaging.contact_sheet(tiles, size), options.format, options.quality)
