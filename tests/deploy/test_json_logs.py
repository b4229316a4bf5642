"""configure_logging(level, fmt): text for people, one JSON object per line for machines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from compere.infra.logging import ServiceLogHandler, configure_logging


@pytest.fixture
def captured():
    """Route the handler configure_logging installs into a buffer; restore root after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()

    def configure(level: str, fmt: str) -> io.StringIO:
        configure_logging(level, fmt)
        for handler in root.handlers:
            if isinstance(handler, ServiceLogHandler):
                handler.setStream(buffer)
        return buffer

    yield configure
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)


def test_json_lines_carry_fields_and_extras(captured):
    out = captured("INFO", "json")
    logging.getLogger("compere.request").info(
        "GET %s %d", "/health", 200, extra={"client": "198.51.100.7", "duration_ms": 1.5}
    )
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "GET /health 200"
    assert entry["level"] == "INFO" and entry["logger"] == "compere.request"
    assert entry["client"] == "198.51.100.7" and entry["duration_ms"] == 1.5
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert isinstance(entry["pid"], int)


def test_a_newline_in_a_logged_value_cannot_forge_a_second_line(captured):
    out = captured("INFO", "json")
    logging.getLogger("compere").warning("login failed for %s", 'bob\n{"level": "INFO", "message": "fake"}')
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"].startswith("login failed for bob\n")


def test_exceptions_are_one_json_line_with_the_traceback(captured):
    out = captured("INFO", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("compere").exception("handler failed")
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert "RuntimeError: boom" in entry["exception"] and "Traceback" in entry["exception"]


def test_level_filters_and_text_format_is_plain(captured):
    out = captured("warning", "text")
    log = logging.getLogger("compere")
    log.info("quiet")
    log.warning("loud")
    text = out.getvalue()
    assert "quiet" not in text
    assert "WARNING" in text and "compere: loud" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_configuring_twice_replaces_instead_of_doubling(captured):
    captured("INFO", "text")
    out = captured("INFO", "json")
    logging.getLogger("compere").info("once")
    assert len(out.getvalue().splitlines()) == 1
    assert sum(isinstance(h, ServiceLogHandler) for h in logging.getLogger().handlers) == 1


@pytest.mark.parametrize("level,fmt", [("INFO", "xml"), ("LOUD", "json")])
def test_bad_arguments_are_rejected(level, fmt):
    with pytest.raises(ValueError):
        configure_logging(level, fmt)
