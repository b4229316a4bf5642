"""Log output for the service: plain text for people, or one JSON object per line.

``configure_logging`` is called once at start-up (the app factory and the CLI call it
with ``LOG_LEVEL`` and ``LOG_FORMAT``). ``gunicorn.conf.py`` reuses ``JsonFormatter`` and
``ServiceLogHandler`` so gunicorn's own lines share the format.

Logged values carry text a client chose (a path, a username), so neither format lets
it start a line of its own: the text format escapes control characters in every field
(``\\n``, ``\\x00``, ...) and indents the lines of a traceback, so every line that starts
at column 0 is a real record; the JSON format escapes them inside its strings.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from aiohttp.http_exceptions import HttpProcessingError

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# emitted as its own JSON field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


def _escapes(codes: list[int]) -> dict[int, str]:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    return {c: named.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in codes}


# C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and paragraph
# separators: everything a terminal, an editor or ``str.splitlines`` may take for a
# line break or use to rewrite what is shown.
_LINE_BREAKERS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_ESCAPE_ALL = _escapes(_LINE_BREAKERS)
_ESCAPE_BUT_NEWLINE = _escapes([c for c in _LINE_BREAKERS if c != 0x0A])
# In JSON, the C0 controls are already escaped by the encoder; these are legal raw
# inside a JSON string but still break lines for some readers.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _LINE_BREAKERS if c >= 0x7F}


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters and line separators escaped."""
    return text.translate(_ESCAPE_ALL)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines that a logged value cannot break or forge.

    The record's line (time, level, logger, message with its arguments) has every
    control character escaped; a traceback or stack follows on lines indented by two
    spaces, with control characters other than its own line breaks escaped.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # Not super().format(): it would reuse an exc_text another handler cached.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = escape_controls(self.formatMessage(record))
        blocks = []
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        elif record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            for part in block.translate(_ESCAPE_BUT_NEWLINE).split("\n"):
                line += "\n  " + part
        return line


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
        return json.dumps(entry, default=str, ensure_ascii=False).translate(_JSON_ESCAPES)


class ServiceLogHandler(logging.StreamHandler):
    """The root handler this module installs (stderr); recognised so it is replaced, not doubled."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)


def build_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``fmt`` (``"text"`` or ``"json"``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
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


class MalformedRequestFilter(logging.Filter):
    """aiohttp's report of a request its parser refused, without what the client sent.

    aiohttp logs a request it cannot parse (a control byte in a header, a request line
    over 8,190 bytes) as an ERROR with a traceback whose message quotes the raw line:
    tokens and passwords included. It is the client's mistake, not a server error: the
    record becomes one INFO line with the client address, the error class and status.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            args = record.args if isinstance(record.args, tuple) else ()
            client = args[0] if len(args) == 1 else "-"  # "Error handling request from %s"
            record.msg = "malformed request from %s refused: %s (%s)"
            record.args = (client, type(exc).__name__, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# aiohttp's server logger; under gunicorn the aiohttp worker hands its request handler
# gunicorn's logger instead, which writes to ``gunicorn.error``.
PARSER_ERROR_LOGGERS = ("aiohttp.server", "gunicorn.error")


def redact_parser_errors() -> None:
    """Install :class:`MalformedRequestFilter` on the loggers that report parser errors (once)."""
    for name in PARSER_ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
            logger.addFilter(MalformedRequestFilter())


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
