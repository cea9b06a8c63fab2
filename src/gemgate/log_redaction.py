"""What every log line passes through: query strings cut from request paths (a client key may
ride in `?key=`), and secret-looking query values masked wherever else a URL is logged."""

from __future__ import annotations

import logging
import re

# Query parameters that carry secrets in the APIs we speak or call.
_SECRET_QUERY = re.compile(
    r"([?&](?:key|api_key|access_token|refresh_token|token|code|psid)=)[^&#\s\"']+", re.I
)


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) >= 3:
            # (client, method, path with query, http version, status): the query goes.
            path = str(args[2])
            if "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0] + "?…", *args[3:])
            return True
        message = record.getMessage()
        if "=" in message and _SECRET_QUERY.search(message):
            record.msg, record.args = _SECRET_QUERY.sub(r"\1***", message), None
        return True


def install() -> None:
    """Put the filter on every handler that writes lines (ours, and uvicorn's)."""
    redact = Redact()
    for name in (None, "uvicorn", "uvicorn.access", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(redact)
