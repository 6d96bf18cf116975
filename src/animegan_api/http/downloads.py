"""Sending a job's result: one byte range (RFC 9110 ``Range``) or all of it, from whichever store keeps it.

The same rules hold whether the bytes come from the job folder or from object
storage: one range is served as 206, a range past the end is a JSON 416 with
``Content-Range: bytes */size``, and a header this service does not serve
(several ranges, another unit, a malformed one) is ignored, so the whole
file comes back with 200, as RFC 9110 allows.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi.responses import RedirectResponse, Response, StreamingResponse

from animegan_api.http.errors import ApiError
from animegan_api.serving.jobs.files import Download, Redirect, Span

__all__ = ["disposition", "requested_span", "send_result"]

_ONE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def requested_span(header: str | None, size: int) -> Span | None:
    """The byte range ``header`` asks of a file of ``size`` bytes; None for the whole file."""
    match = _ONE_RANGE.fullmatch(header.strip().replace(" ", "")) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last bytes
        span = (max(0, size - int(last)), size) if int(last) else (size, size)
    elif last and int(last) < int(first):
        return None  # not a valid range: ignored
    else:
        span = (int(first), min(size, int(last) + 1) if last else size)
    if span[0] >= size:
        headers = {"Content-Range": f"bytes */{size}"}
        raise ApiError(
            "range_not_satisfiable", f"the result has {size} bytes; the range asked for is past its end", headers
        )
    return span


def disposition(kind: str, filename: str) -> str:
    """``Content-Disposition`` for ``filename``, with its UTF-8 form where it is not plain ASCII."""
    quoted = quote(filename)
    if quoted == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{quoted}"


def send_result(result: Download | Redirect, media_type: str, disposition_header: str) -> Response:
    """The response for a result the store gave: a redirect to a signed link, or its bytes as they are read."""
    if isinstance(result, Redirect):
        return RedirectResponse(result.url, 307)
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": disposition_header}
    if result.etag:
        headers["ETag"] = result.etag
    first, end = result.span or (0, result.size)
    headers["Content-Length"] = str(end - first)
    if result.span is None:
        return StreamingResponse(result.chunks, 200, headers, media_type)
    headers["Content-Range"] = f"bytes {first}-{end - 1}/{result.size}"
    return StreamingResponse(result.chunks, 206, headers, media_type)
