"""Log lines a client cannot forge: whatever a request carries stays inside its own line.

Each test sends requests through HTTP and reads what the service's real formatters
(``LOG_FORMAT=text`` and ``json``) wrote for them: exactly one line per record, each a
whole record, none starting with the forged text.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from compere.http.app import create_app
from compere.infra.logging import build_formatter

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
async def test_an_authentication_failure_line_cannot_be_extended(make_auth_client, captured, brk):
    client = await make_auth_client()
    resp = await client.get(forged_path("/entities/", brk), headers={"Authorization": "Bearer not-a-token"})
    assert resp.status in (401, 404)
    written = captured.assert_one_whole_line_per_record()
    assert "authentication failed" in written


# --- requests aiohttp's parser refuses, or bodies cut short -------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJlLXNlY3JldA"
PASSWORD = "hunter2-never-in-a-log"
MALFORMED = [
    # A control byte after a valid-looking bearer token.
    f"GET /entities/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\x01\r\n\r\n".encode(),
    # A request line over aiohttp's 8,190 bytes, with a password in its query string.
    f"GET /auth/token?username=alice&password={PASSWORD}&pad={'a' * 8200} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    # A header line over the limit, carrying the token.
    f"GET / HTTP/1.1\r\nHost: x\r\nX-Note: {TOKEN}{'b' * 8200}\r\n\r\n".encode(),
]


@pytest.fixture
async def served(make_settings) -> AsyncIterator[tuple[str, int]]:
    """The app on a loopback port, served as gunicorn's aiohttp worker serves it.

    Not the test client's server: that one cancels a handler whose client went away,
    which production does not do.
    """
    runner = web.AppRunner(await create_app(make_settings(), configure_logs=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][:2]
    await runner.cleanup()


async def raw_exchange(address: tuple[str, int], data: bytes, *, close_write: bool = False) -> bytes:
    """Send raw bytes to the server; the answer, whatever it is."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("data", MALFORMED, ids=["control-byte", "long-url", "long-header"])
async def test_a_malformed_request_is_one_quiet_line_without_what_it_carried(served, captured, data):
    answer = await raw_exchange(served, data)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    await asyncio.sleep(0.05)  # aiohttp logs after answering
    written = captured.assert_one_whole_line_per_record()
    assert TOKEN not in written and PASSWORD not in written and "password=" not in written
    assert "Traceback" not in written and "ERROR" not in written
    assert "malformed request from 127.0.0.1 refused" in written


async def test_a_body_shorter_than_its_content_length_is_not_a_server_error(served, captured):
    head = b"POST /entities/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    await raw_exchange(served, head + b'{"name": "cut', close_write=True)
    await asyncio.sleep(0.05)
    written = captured.assert_one_whole_line_per_record()
    assert "Traceback" not in written and "ERROR" not in written
    request_lines = [
        line for line in written.splitlines() if "POST /entities/" in line and "compere.request" in line
    ]
    assert len(request_lines) == 1 and " 400 " in request_lines[0].replace('"status": 400', " 400 "), (
        request_lines
    )
    host, port = served
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/entities/") as listed:
        assert await listed.json() == []


async def test_a_missing_static_file_is_logged_with_the_status_it_got(client, captured):
    missing = await client.get("/app/no-such-file.js")
    assert missing.status == 404
    present = await client.get("/app/api.js")
    assert present.status == 200
    written = captured.assert_one_whole_line_per_record()
    lines = {
        path: [line for line in written.splitlines() if path in line and "compere.request" in line]
        for path in ("/app/no-such-file.js", "/app/api.js")
    }
    for path, status in (("/app/no-such-file.js", 404), ("/app/api.js", 200)):
        assert len(lines[path]) == 1, lines
        line = lines[path][0]
        assert f" {status} " in line or f'"status": {status}' in line, line


async def test_no_answer_names_python_or_aiohttp_versions(client, served):
    resp = await client.get("/health")
    assert resp.headers["Server"] == "compere"
    missing = await client.get("/app/no-such-file.js")
    assert missing.headers["Server"] == "compere"
    answer = await raw_exchange(served, MALFORMED[0])
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"server: compere" in head
    assert b"python" not in head and b"aiohttp" not in head
