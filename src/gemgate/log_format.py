"""`GEMGATE_LOG_FORMAT=json`: one JSON object per line, for log collectors. Every line carries
the request id of the request it was written for, when there is one; request lines (one per
routed request, from `proxy.Exchange.finish`) carry the key name, channel, model, credential,
status and latency as fields. Secrets never reach a line: the redaction filter
(`log_redaction`) runs on every handler before this formatter."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import orjson

from gemgate.api.request_id import CURRENT

# LogRecord's own attributes; anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def __init__(self, process: bool = False) -> None:
        super().__init__()
        # With several workers, which process wrote a line (its pid).
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process:
            line["pid"] = record.process
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if "request_id" not in line:
            request_id = CURRENT.get()
            if request_id:
                line["request_id"] = request_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str, process: bool = False) -> None:
    """Root logging: our text lines, or JSON lines that uvicorn's own loggers share; with
    `process` (several workers), each line names the process that wrote it."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        pid = " [%(process)d]" if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def uvicorn_text(process: bool) -> dict[str, Any]:
    """uvicorn's own text logging setup; with `process`, its lines name their process too."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    if process:
        for formatter in config["formatters"].values():
            formatter["fmt"] = formatter["fmt"].replace(
                "%(levelprefix)s ", "%(levelprefix)s [%(process)d] ", 1
            )
    return config
