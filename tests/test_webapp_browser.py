"""The web app end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

One Compere server (a real ``python -m compere serve`` process on SQLite) and one
browser for the module; each test gets a fresh browser context and fails if the page
logs any console error or throws. Set ``COMPERE_SCREENSHOTS=1`` to refresh the images
in ``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)


class Server:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        return self.call_with_headers(method, path, body, token)[0]

    def call_with_headers(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[Any, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read()), response.headers


@contextlib.contextmanager
def running_server(
    folder: Path, before: list[str] | None = None, before_env: dict[str, str] | None = None, **settings: str
) -> Iterator[Server]:
    """``python -m compere serve`` on a SQLite file in ``folder``, stopped (by its PID) after.

    ``before``: a ``compere`` command (arguments) run first on the same database and
    settings, with ``before_env`` added to its environment only.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{folder / 'compere.db'}",
        "LOG_REQUESTS": "false",
        **settings,
    }
    if before:
        subprocess.run(
            [sys.executable, "-m", "compere", *before],
            cwd=folder,
            env={**env, **(before_env or {})},
            check=True,
            capture_output=True,
        )
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "compere", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (folder / "server.log").read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield Server(base)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("webapp")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context; the test fails if any of its pages logs an error."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    errors: list[str] = []

    def watch(page: Any) -> None:
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    ctx.on("page", watch)
    try:
        yield ctx
    finally:
        ctx.close()
    assert errors == [], errors


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def board_names(page: Any) -> list[str]:
    return page.locator("tbody[data-rows] tr td.name").all_inner_texts()


def rank_text(entity: dict[str, Any]) -> str:
    """What the rank cell shows for an entity of ``GET /ratings``: ``=3tied`` when shared."""
    return f"={entity['rank']}tied" if entity["tied"] else str(entity["rank"])


def assert_board_matches_server(page: Any, server: Server, skip: int, limit: int = 25) -> None:
    """The rows on screen are the server's page: same order, shared ranks, scores, intervals."""
    expected = server.call("GET", f"/ratings?by=score&skip={skip}&limit={limit}")
    rows = page.locator("tbody[data-rows] tr")
    assert board_names(page) == [e["name"] for e in expected]
    assert rows.locator("td.rank").all_inner_texts() == [rank_text(e) for e in expected]
    assert rows.locator("td.score").all_inner_texts() == [f"{e['score']:.2f}" for e in expected]
    labels = rows.locator("svg.interval").evaluate_all("bars => bars.map(b => b.getAttribute('aria-label'))")
    assert labels == [
        f"95% interval {e['interval_95'][0]:.2f} to {e['interval_95'][1]:.2f}" for e in expected
    ]
    tied = rows.evaluate_all("rows => rows.map(r => r.classList.contains('tied'))")
    assert tied == [e["tied"] for e in expected]


def test_twenty_keyboard_votes_reorder_the_leaderboard(server: Server, context: Any, page: Any) -> None:
    from playwright.sync_api import expect

    for name in ("Alpha", "Bravo", "Charlie", "Delta"):
        server.call("POST", "/entities/", {"name": name, "description": f"{name} is an option"})
    favourite = "Delta"

    # A leaderboard left open in another tab refreshes by itself.
    board = context.new_page()
    board.goto(server.base + "/leaderboard")
    expect(board.locator("tbody[data-rows] tr")).to_have_count(4)
    # Everyone starts at the prior: one shared rank, the same score and interval.
    assert board_names(board) == ["Alpha", "Bravo", "Charlie", "Delta"]
    expect(board.locator("tbody tr.tied")).to_have_count(4)
    assert board.locator("td.rank").all_inner_texts() == ["=1tied"] * 4
    assert_board_matches_server(board, server, skip=0)

    # The pairs the server serves (with their pair tokens) and the votes the page posts.
    served: list[Any] = []
    posted: list[dict[str, Any]] = []
    page.on("response", lambda r: served.append(r) if "/mab/next_comparison" in r.url else None)
    page.on(
        "request",
        lambda r: (
            posted.append(r.post_data_json) if r.method == "POST" and "/comparisons/" in r.url else None
        ),
    )

    page.goto(server.base + "/")
    pair = page.locator("section[data-pair]")
    expect(pair).to_be_visible()
    count = page.locator("[data-count]")
    votes = skips = 0
    while votes < 20:
        serial = pair.get_attribute("data-pair-serial")
        left = page.locator("[data-side=left] [data-field=name]").inner_text()
        right = page.locator("[data-side=right] [data-field=name]").inner_text()
        if skips == 0 and votes == 3:
            key = "s"
        elif favourite in (left, right):
            key = "ArrowLeft" if left == favourite else "ArrowRight"
        else:
            key = "ArrowDown"  # the others tie, so only the favourite can rise
        page.keyboard.press(key)
        expect(pair).not_to_have_attribute("data-pair-serial", serial or "")
        if key == "s":
            skips += 1
        else:
            votes += 1
            expect(count).to_have_text(str(votes))
    expect(page.locator("[data-status]")).to_contain_text("Vote recorded")

    # Every vote carries the token the server issued for exactly that pair, once.
    stored = server.call("GET", "/comparisons/?limit=100")
    assert len(stored) == 20
    assert len(posted) == 20
    issued = {}
    for response in served:
        body = response.json()
        issued[body["pair_token"]] = {body["entity1"]["id"], body["entity2"]["id"]}
    for body in posted:
        assert issued[body["pair_token"]] == {body["entity1_id"], body["entity2_id"]}
    assert len({body["pair_token"] for body in posted}) == 20
    # ...and the server linked each vote to its served pair (a vote without a token has none).
    assert all(c["strategy"] is not None and c["selection_probability"] > 0 for c in stored)
    assert any(c["selected_entity_id"] is not None for c in stored)

    expect(board.locator("tbody[data-rows] tr").first).to_contain_text(favourite, timeout=15_000)
    board.get_by_label("Live updates").uncheck()  # hold still while it is compared
    board.get_by_role("button", name="Refresh now").click()
    expect(board.locator("[data-updated]")).to_contain_text("Updated")
    board.wait_for_load_state("networkidle")
    ranking = server.call("GET", "/ratings?by=score&limit=25")
    assert ranking[0]["name"] == favourite
    assert ranking[0]["score"] > max(e["score"] for e in ranking[1:])
    assert_board_matches_server(board, server, skip=0)

    if os.environ.get("COMPERE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "vote.png"))


def test_choices_are_buttons_with_names_and_a_click_votes(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.base + "/")
    left = page.locator("[data-side=left]")
    expect(left).to_be_visible()
    name = left.locator("[data-field=name]").inner_text()
    expect(page.get_by_role("button", name=f"Prefer {name}")).to_be_visible()
    before = int(page.locator("[data-count]").inner_text())
    page.get_by_role("button", name="Equally good").click()
    expect(page.locator("[data-count]")).to_have_text(str(before + 1))
    # Keyboard only: Tab reaches the left choice, Enter votes for it.
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")
    for _ in range(6):
        if page.evaluate("document.activeElement.dataset.side") == "left":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.side") == "left"
    page.keyboard.press("Enter")
    expect(page.locator("[data-count]")).to_have_text(str(before + 2))


def test_a_pair_left_on_screen_past_its_token_is_replaced_not_voted(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.clock.install()  # the page's clock, so an hour can pass at once
    page.goto(server.base + "/")
    pair = page.locator("section[data-pair]")
    expect(pair).to_be_visible()
    count = page.locator("[data-count]")
    expect(count).to_have_text("0")
    stored = len(server.call("GET", "/comparisons/?limit=1000"))
    serial = pair.get_attribute("data-pair-serial") or ""

    page.clock.fast_forward("50:00")  # past 80% of the server's PAIR_TOKEN_TTL (one hour)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("[data-status]")).to_contain_text("That pair had expired")
    expect(pair).not_to_have_attribute("data-pair-serial", serial)
    expect(count).to_have_text("0")
    assert len(server.call("GET", "/comparisons/?limit=1000")) == stored

    page.keyboard.press("ArrowLeft")  # the fresh pair's token is accepted
    expect(count).to_have_text("1")
    expect(page.locator("[data-status]")).to_contain_text("Vote recorded")
    newest = server.call("GET", "/comparisons/?limit=1000")
    assert len(newest) == stored + 1
    assert all(c["strategy"] is not None for c in newest)


def test_leaderboard_search_asks_the_server(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.base + "/leaderboard")
    expect(page.locator("tbody[data-rows] tr").first).to_be_visible()
    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "search=" in r.url else None)
    page.get_by_label("Search").fill("char")
    rows = page.locator("tbody[data-rows] tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td.name")).to_have_text("Charlie")
    expect(page.locator("[data-page-status]")).to_have_text("Page 1 of 1 (1 entity)")
    assert any("/entities/?" in url and "search=char" in url for url in searches)
    # Matches show their own score and interval, but no rank: a search result's position is not one.
    (charlie,) = server.call("GET", "/entities/?search=Charlie")
    low, high = charlie["interval_95"]
    expect(rows.locator("td.score")).to_have_text(f"{charlie['score']:.2f}")
    expect(page.get_by_role("img", name=f"95% interval {low:.2f} to {high:.2f}")).to_be_visible()
    expect(rows.locator("td.rank")).to_have_text("–")
    expect(page.locator("[data-search-note]")).to_be_visible()
    page.get_by_label("Search").fill("")
    expect(page.locator("[data-search-note]")).to_be_hidden()
    expect(rows.first.locator("td.rank")).not_to_have_text("–")


@pytest.fixture(scope="module")
def board_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """60 entities with hidden strengths from +3 to -3 and 600 Bradley-Terry votes between them."""
    with running_server(tmp_path_factory.mktemp("board")) as running:
        lines = "".join(
            json.dumps({"external_id": f"e{i:02d}", "name": f"Entity {i:02d}"}) + "\n" for i in range(60)
        )
        request = urllib.request.Request(
            running.base + "/entities/import?format=jsonl", data=lines.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["created"] == 60
        ids = {e["external_id"]: e["id"] for e in running.call("GET", "/entities/?limit=100")}
        strength = {ids[f"e{i:02d}"]: 3 - i / 10 for i in range(60)}
        rng = random.Random(7)
        for _ in range(600):
            first, second = rng.sample(sorted(strength), 2)
            first_wins = rng.random() < 1 / (1 + math.exp(strength[second] - strength[first]))
            running.call(
                "POST",
                "/comparisons/",
                {
                    "entity1_id": first,
                    "entity2_id": second,
                    "selected_entity_id": first if first_wins else second,
                },
            )
        yield running


def test_leaderboard_pages_come_from_the_server_with_shared_ranks(board_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    ratings: list[str] = []
    page.on("request", lambda r: ratings.append(r.url) if "/ratings" in r.url else None)
    page.goto(board_server.base + "/leaderboard")
    page.get_by_label("Live updates").uncheck()
    status = page.locator("[data-page-status]")
    expect(status).to_have_text("Page 1 of 3 (60 entities)")
    rows = page.locator("tbody[data-rows] tr")
    expect(rows).to_have_count(25)
    assert_board_matches_server(page, board_server, skip=0)

    page.get_by_role("button", name="Next").click()
    expect(status).to_have_text("Page 2 of 3 (60 entities)")
    expect(rows.first.locator("td.name")).not_to_have_text("Entity 00")
    assert_board_matches_server(page, board_server, skip=25)
    page.get_by_role("button", name="Next").click()
    expect(status).to_have_text("Page 3 of 3 (60 entities)")
    expect(rows).to_have_count(10)
    assert_board_matches_server(page, board_server, skip=50)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()

    # The data gives both kinds of row: shared ranks, and entities shown to be worse than others.
    board = board_server.call("GET", "/ratings?by=score&limit=60")
    assert any(e["tied"] for e in board) and any(e["rank"] > 1 for e in board)
    expect(rows.last.locator("td.rank")).to_contain_text(str(board[-1]["rank"]))
    # Bars on one page share a scale: the lowest interval starts furthest left.
    bars = [rows.nth(i).locator("rect.range").bounding_box() for i in range(10)]
    lows = [e["interval_95"][0] for e in board[50:]]
    assert all(b is not None for b in bars)
    assert min(range(10), key=lambda i: bars[i]["x"]) == min(range(10), key=lambda i: lows[i])

    # Only pages were asked for, never the whole board.
    assert ratings and all("limit=25" in url and "by=score" in url for url in ratings)
    assert any("skip=50" in url for url in ratings)
    _, headers = board_server.call_with_headers("GET", "/ratings?by=score&limit=1")
    assert headers["X-Total-Count"] == "60"

    if os.environ.get("COMPERE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.get_by_role("button", name="Previous").click()
        page.get_by_role("button", name="Previous").click()
        expect(status).to_have_text("Page 1 of 3 (60 entities)")
        page.screenshot(path=str(SCREENSHOTS / "leaderboard.png"), full_page=True)


def test_import_a_small_file_through_the_page(server: Server, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    source = tmp_path / "teas.csv"
    source.write_text(
        "external_id,name,description,image_urls\n"
        "tea-1,Sencha,grassy,\n"
        'tea-2,"Earl Grey, strong",bergamot,\n'
        "tea-3,Oolong,,\n"
        "tea-4,,no name,\n",
        encoding="utf-8",
    )
    page.goto(server.base + "/admin")
    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_role("button", name="Import").click()
    result = page.locator("[data-import-result]")
    expect(result).to_contain_text("teas.csv: 3 created, 0 already present, 1 rejected.")
    expect(result).to_contain_text("Line 5: name:")
    names = {e["name"] for e in server.call("GET", "/entities/?limit=1000")}
    assert {"Sencha", "Earl Grey, strong", "Oolong"} <= names

    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_role("button", name="Import").click()
    expect(result).to_contain_text("teas.csv: 0 created, 3 already present, 1 rejected.")
    teas = [
        e for e in server.call("GET", "/entities/?limit=1000") if (e["external_id"] or "").startswith("tea-")
    ]
    assert sorted(e["external_id"] for e in teas) == ["tea-1", "tea-2", "tea-3"]  # no duplicates


def test_create_edit_and_delete_an_entity(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.base + "/admin")
    page.get_by_label("Name", exact=True).fill("Yerba mate")
    page.get_by_label("Description", exact=True).fill("bitter")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("[data-status]")).to_have_text("Added Yerba mate.")
    page.get_by_label("Search").fill("Yerba")
    expect(page.locator("[data-page-status]")).to_have_text("Page 1 of 1 (1 entity)")
    item = page.locator("ul[data-entities] li")
    expect(item).to_have_count(1)

    page.get_by_role("button", name="Edit Yerba mate").click()
    page.get_by_label("Description", exact=True).last.fill("bitter and grassy")
    page.get_by_role("button", name="Save").click()
    expect(item).to_contain_text("bitter and grassy")
    stored = server.call("GET", "/entities/?search=Yerba")
    assert [e["description"] for e in stored] == ["bitter and grassy"]

    delete = page.get_by_role("button", name="Delete Yerba mate")
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    delete.click()
    expect(page.locator("[data-status]")).to_have_text("Deleted Yerba mate.")
    assert server.call("GET", "/entities/?search=Yerba") == []


def test_pages_work_on_a_phone_and_login_says_auth_is_off(server: Server, browser: Any) -> None:
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(server.base + "/")
        left = page.locator("[data-side=left]")
        expect(left).to_be_visible()
        box = left.bounding_box()
        assert box is not None and box["width"] <= 390  # no sideways scrolling
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        before = int(page.locator("[data-count]").inner_text())
        left.tap()
        expect(page.locator("[data-count]")).to_have_text(str(before + 1))
        if os.environ.get("COMPERE_SCREENSHOTS"):
            page.screenshot(path=str(SCREENSHOTS / "vote-phone.png"))
        page.goto(server.base + "/login")
        expect(page.get_by_role("alert")).to_contain_text("authentication is off")
        assert errors == []
    finally:
        ctx.close()


ADMIN_PASSWORD = "amber-falcon-meadow-62"
AUTH_SETTINGS = {
    "AUTH_ENABLED": "true",
    "AUTH_COOKIE": "true",
    "SECRET_KEY": "browser-test-secret-key-0123456789-abcdef",
    "BCRYPT_ROUNDS": "10",
    "REDIS_URL": os.environ.get("COMPERE_TEST_WEBAPP_REDIS_URL", "redis://127.0.0.1:6379/8"),
}


@contextlib.contextmanager
def auth_enabled_server(folder: Path, **settings: str) -> Iterator[Server]:
    """Authentication on; the superuser made with ``compere createsuperuser``; three entities."""
    with running_server(
        folder,
        before=["createsuperuser", "--username", "admin"],
        before_env={"COMPERE_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        **{**AUTH_SETTINGS, **settings},
    ) as running:
        form = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD}).encode()
        with urllib.request.urlopen(running.base + "/auth/token", data=form, timeout=30) as response:
            token = json.loads(response.read())["access_token"]
        for name in ("Oak", "Birch", "Maple"):
            running.call("POST", "/entities/", {"name": name}, token=token)
        yield running


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Cookie mode: an httpOnly session cookie and a CSRF cookie."""
    with auth_enabled_server(tmp_path_factory.mktemp("auth")) as running:
        yield running


def test_log_in_vote_and_log_out(auth_server: Server, context: Any, page: Any) -> None:
    from playwright.sync_api import expect

    base = auth_server.base
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login?next=%2F")  # no session: sent to log in first
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + "/")
    expect(page.locator("[data-account]")).to_contain_text("Signed in as admin")

    cookies = {c["name"]: c for c in context.cookies(base)}
    session, csrf = cookies["__Host-compere_token"], cookies["__Host-compere_csrf"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert not csrf["httpOnly"]  # the page reads it to echo it
    assert page.evaluate("sessionStorage.getItem('compere.token')") is None  # no token in storage
    assert "compere_token" not in page.evaluate("document.cookie")

    headers: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: headers.append(r.headers) if r.method == "POST" and "/comparisons/" in r.url else None,
    )
    pair = page.locator("section[data-pair]")
    expect(pair).to_be_visible()
    for votes in range(1, 4):
        serial = pair.get_attribute("data-pair-serial") or ""
        page.keyboard.press("ArrowLeft")
        expect(pair).not_to_have_attribute("data-pair-serial", serial)
        expect(page.locator("[data-count]")).to_have_text(str(votes))
    assert [h.get("x-csrf-token") for h in headers] == [csrf["value"]] * 3
    assert all("authorization" not in h for h in headers)  # the cookie carries the session
    me = auth_server.call("GET", "/auth/users/me", token=session["value"])
    stored = auth_server.call("GET", "/comparisons/?limit=100", token=session["value"])
    assert len(stored) == 3 and {c["user_id"] for c in stored} == {me["id"]}

    # The same session without the CSRF header (what a forged cross-site form would send): refused.
    ids = [e["id"] for e in auth_server.call("GET", "/entities/", token=session["value"])]
    forged = context.request.post(
        base + "/comparisons/",
        data={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]},
    )
    assert forged.status == 403
    assert len(auth_server.call("GET", "/comparisons/?limit=100", token=session["value"])) == 3

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(base + "/login")
    expect(page.get_by_label("Username")).to_be_visible()
    assert {c["name"] for c in context.cookies(base)}.isdisjoint(cookies)
    with pytest.raises(urllib.error.HTTPError) as refused:  # the old session is revoked, not just forgotten
        auth_server.call("GET", "/auth/users/me", token=session["value"])
    assert refused.value.code == 401
    refused.value.close()
    page.goto(base + "/leaderboard")
    expect(page).to_have_url(base + "/login?next=%2Fleaderboard")


def test_bearer_mode_keeps_the_token_in_the_tab_and_logs_out(
    tmp_path_factory: pytest.TempPathFactory, context: Any, page: Any
) -> None:
    """AUTH_COOKIE=false: the login answer's token is kept in sessionStorage and sent as Bearer."""
    from playwright.sync_api import expect

    with auth_enabled_server(tmp_path_factory.mktemp("bearer"), AUTH_COOKIE="false") as server:
        base = server.base
        page.goto(base + "/leaderboard")
        expect(page).to_have_url(base + "/login?next=%2Fleaderboard")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(base + "/leaderboard")
        expect(page.locator("tbody[data-rows] tr")).to_have_count(3)
        assert context.cookies(base) == []
        token = page.evaluate("sessionStorage.getItem('compere.token')")
        assert server.call("GET", "/auth/users/me", token=token)["username"] == "admin"

        authorization: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                authorization.append(r.headers.get("authorization"))
                if r.method == "POST" and "/comparisons/" in r.url
                else None
            ),
        )
        page.goto(base + "/")
        expect(page.locator("section[data-pair]")).to_be_visible()
        page.keyboard.press("ArrowDown")
        expect(page.locator("[data-count]")).to_have_text("1")
        assert authorization == [f"Bearer {token}"]

        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(base + "/login")
        assert page.evaluate("sessionStorage.getItem('compere.token')") is None
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.call("GET", "/auth/users/me", token=token)
        assert refused.value.code == 401
        refused.value.close()


# The ReDoc bundle shows Redocly's logo from their CDN in its menu footer; the page's
# policy blocks it (no third-party requests) and ReDoc then hides the image.
_REDOC_LOGO_BLOCKED = "cdn.redoc.ly"


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/docs", ".swagger-ui .opblock-tag"), ("/redoc", "[role=menuitem], .menu-content li")],
)
def test_api_docs_pages_render_under_their_content_security_policy(
    server: Server, browser: Any, path: str, rendered: str
) -> None:
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    errors: list[str] = []
    loaded: list[str] = []  # what the browser fetched (a request the policy blocks never finishes)
    try:
        page = ctx.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("requestfinished", lambda request: loaded.append(request.url))
        response = page.goto(server.base + path)
        assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
        page.locator(rendered).first.wait_for(timeout=20_000)
        assert "/entities/" in page.content()  # the document's paths are on the page
    finally:
        ctx.close()
    assert [e for e in errors if _REDOC_LOGO_BLOCKED not in e] == [], errors
    assert all(url.startswith((server.base, "data:", f"blob:{server.base}")) for url in loaded), loaded
