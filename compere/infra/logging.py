"""Log output for the service: plain text for people, or one JSON object per line.

``configure_logging`` is called once at start-up (the app factory and the CLI call it
with ``LOG_LEVEL`` and ``LOG_FORMAT``). ``gunicorn.conf.py`` reuses ``JsonFormatter`` and
``ServiceLogHandler`` so gunicorn's own lines share the format. JSON lines keep log
shippers simple and make a forged newline in a logged value harmless: it is escaped
inside the string instead of starting a fake log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# emitted as its own JSON field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as a single-line JSON object.

    Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``pid``,
    ``message``, any ``extra=`` fields, and ``exception`` with the formatted traceback.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ServiceLogHandler(logging.StreamHandler):
    """The root handler this module installs (stderr); recognised so it is replaced, not doubled."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)


def build_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``fmt`` (``"text"`` or ``"json"``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")


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
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, _REQUEST_LINE_QUERY.sub(r"\1", value))
        return True


def redact_access_logs() -> None:
    """Install :class:`QueryStringRedactor` on the access loggers (once)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringRedactor) for f in logger.filters):
            logger.addFilter(QueryStringRedactor())


def configure_logging(level: str, fmt: str) -> None:
    """Send all log records at ``level`` and above to stderr in ``fmt`` (``text`` or ``json``).

    Safe to call more than once: the handler installed by an earlier call (or by
    gunicorn's ``logconfig_dict``) is replaced; handlers others added (test capture,
    for instance) are left alone.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    formatter = build_formatter(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, ServiceLogHandler):
            root.removeHandler(handler)
            handler.close()
    handler = ServiceLogHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(numeric)
    # aiohttp's own access log would duplicate the request-logging middleware's line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
