"""Log lines a client cannot forge: whatever a request carries stays inside its own line.

Each test sends requests through HTTP and reads what the service's real formatters
(``LOG_FORMAT=text`` and ``json``) wrote for them: exactly one line per record, each a
whole record, none starting with the forged text.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from yarl import URL

from compere.infra.logging import build_formatter
from tests.conftest import AUTH_ENV

# What a real text record starts with: time, level, [pid], logger name.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[\d+\] [\w.]+: ")
FORGED = "2026-12-03 06:00:00,000 WARNING [1] compere.auth: authentication succeeded user=admin"
# Line breaks as a path may carry them, percent-encoded: LF, CR, CRLF, NUL, NEL, U+2028.
BREAKS = ["%0a", "%0d", "%0d%0a", "%00", "%c2%85", "%e2%80%a8"]


class Capture(logging.StreamHandler):
    """Formats records as the service would and counts them."""

    def __init__(self, fmt: str) -> None:
        super().__init__(io.StringIO())
        self.fmt = fmt
        self.records = 0
        self.setFormatter(build_formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        super().emit(record)

    def assert_one_whole_line_per_record(self) -> str:
        written = self.stream.getvalue()
        lines = written.splitlines()
        assert len(lines) == self.records, lines
        for line in lines:
            if self.fmt == "text":
                assert RECORD_START.match(line), line
            else:
                json.loads(line)
        return written


@pytest.fixture(params=["text", "json"])
def captured(request) -> Iterator[Capture]:
    capture = Capture(request.param)
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    yield capture
    root.removeHandler(capture)
    root.setLevel(level)


def forged_path(prefix: str, brk: str) -> URL:
    forged = FORGED.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")
    return URL(prefix + brk + forged, encoded=True)


@pytest.mark.parametrize("brk", BREAKS)
async def test_a_path_with_a_line_break_stays_on_its_request_line(make_client, captured, brk):
    client = await make_client()
    resp = await client.get(forged_path("/no/such/", brk))
    assert resp.status == 404
    written = captured.assert_one_whole_line_per_record()
    assert "authentication succeeded" in written  # decoded by the request log, escaped


@pytest.mark.parametrize("brk", ["%0a", "%0d", "%00"])
async def test_an_authentication_failure_line_cannot_be_extended(make_client, captured, brk):
    client = await make_client(**AUTH_ENV)
    resp = await client.get(forged_path("/entities/", brk), headers={"Authorization": "Bearer not-a-token"})
    assert resp.status in (401, 404)
    written = captured.assert_one_whole_line_per_record()
    assert "authentication failed" in written
