"""Process logging: one handler on the root logger, JSON lines or plain text.

uvicorn's loggers propagate here (the server is started without its own log
config) and its access log is off: ``observability.ObservabilityMiddleware`` writes
one richer line per request instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

__all__ = ["JsonFormatter", "LogFormat", "configure"]

LogFormat = Literal["json", "text"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, fmt: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
