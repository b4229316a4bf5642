"""Log set-up: human-readable lines or one JSON object per line (``LOG_FORMAT=json``)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# A request line's query string: it may carry credentials a client put in the URL.
_REQUEST_LINE_QUERY = re.compile(
    r"\b((?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT) [^\s?\"]*)\?[^\s\"]*"
)
# Loggers that write request lines: aiohttp's access log and gunicorn's (aiohttp worker).
ACCESS_LOGGERS = ("aiohttp.access", "gunicorn.access")


class QueryStringRedactor(logging.Filter):
    """Drops query strings from access-log request lines, in the message and the extras.

    Compere's own request log writes the path only; this covers the access logs a
    server runner may add (aiohttp's ``%r``, gunicorn's ``--access-logfile``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _REQUEST_LINE_QUERY.sub(r"\1", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _REQUEST_LINE_QUERY.sub(r"\1", a) if isinstance(a, str) else a for a in record.args
            )
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, _REQUEST_LINE_QUERY.sub(r"\1", value))
        return True


def redact_access_logs() -> None:
    """Install :class:`QueryStringRedactor` on the access loggers (once)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringRedactor) for f in logger.filters):
            logger.addFilter(QueryStringRedactor())


def configure_logging(level: str, fmt: str) -> None:
    """Send Compere's logs to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would duplicate our request log line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
