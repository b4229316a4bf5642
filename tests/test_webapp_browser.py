"""The web app end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

One Compere server (a real ``python -m compere serve`` process on SQLite) and one
browser for the module; each test gets a fresh browser context and fails if the page
logs any console error or throws. Set ``COMPERE_SCREENSHOTS=1`` to refresh the images
in ``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compere.http.webapp import PAGES, PROJECT_PAGES, SLUG
from tests.helpers import RedisRole

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


@contextlib.contextmanager
def watched_context(browser: Any, errors: list[str], **options: Any) -> Iterator[Any]:
    """A fresh browser context whose pages' console errors and exceptions go to ``errors``."""
    ctx = browser.new_context(**options)

    def watch(page: Any) -> None:
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    ctx.on("page", watch)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the test's pages logged as errors; a test may remove the ones it provoked."""
    return []


@pytest.fixture
def context(browser: Any, console_errors: list[str]) -> Iterator[Any]:
    """A fresh browser context; the test fails if any of its pages logs an error."""
    with watched_context(browser, console_errors, viewport={"width": 1100, "height": 760}) as ctx:
        yield ctx
    assert console_errors == [], console_errors


@pytest.fixture
def phone(browser: Any, console_errors: list[str]) -> Iterator[Any]:
    """A page 390 px wide with touch, as on a phone; fails the test on any page error."""
    options = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    with watched_context(browser, console_errors, **options) as ctx:
        yield ctx.new_page()
    assert console_errors == [], console_errors


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def board_names(page: Any) -> list[str]:
    return page.locator("tbody[data-rows] tr td.name").all_inner_texts()


def rank_text(entity: dict[str, Any]) -> str:
    """What the rank cell shows for an entity of ``GET /ratings?detail=full``: ``=3tied``
    when shared, followed by ``provisional`` when the entry is."""
    shown = f"={entity['rank']}tied" if entity["tied"] else str(entity["rank"])
    return shown + ("provisional" if entity.get("provisional") else "")


def range_text(entity: dict[str, Any]) -> str:
    best, worst = entity["rank_interval_95"]
    return str(best) if best == worst else f"{best}\u2013{worst}"


def assert_board_matches_server(
    page: Any, server: Server, skip: int, limit: int = 25, category: str | None = None
) -> None:
    """The rows on screen are the server's page: same order (provisional entries last),
    shared ranks, provisional badges, rank intervals, scores, intervals."""
    where = f"&category={category}" if category else ""
    expected = server.call("GET", f"/ratings?detail=full&skip={skip}&limit={limit}{where}")
    rows = page.locator("tbody[data-rows] tr")
    assert board_names(page) == [e["name"] for e in expected]
    assert rows.locator("td.rank").all_inner_texts() == [rank_text(e) for e in expected]
    assert rows.locator("td.rank-range").all_inner_texts() == [range_text(e) for e in expected]
    provisional = rows.evaluate_all("rows => rows.map(r => r.classList.contains('provisional'))")
    assert provisional == [e["provisional"] for e in expected]
    assert rows.locator("td.score").all_inner_texts() == [f"{e['score']:.2f}" for e in expected]
    labels = rows.locator("svg.interval").evaluate_all("bars => bars.map(b => b.getAttribute('aria-label'))")
    assert labels == [
        f"95% interval {e['interval_95'][0]:.2f} to {e['interval_95'][1]:.2f}" for e in expected
    ]
    tied = rows.evaluate_all("rows => rows.map(r => r.classList.contains('tied'))")
    assert tied == [e["tied"] for e in expected]


def watch_votes(page: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The pair responses the page receives (with their pair tokens) and the votes it posts."""
    served: list[Any] = []
    posted: list[dict[str, Any]] = []
    page.on("response", lambda r: served.append(r) if "/mab/next_comparison" in r.url else None)
    page.on(
        "request",
        lambda r: (
            posted.append(r.post_data_json) if r.method == "POST" and "/comparisons/" in r.url else None
        ),
    )
    return served, posted


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
    # ...and no votes yet: every entry is provisional, and could be anywhere.
    assert board.locator("td.rank").all_inner_texts() == ["=1tiedprovisional"] * 4
    assert board.locator("td.rank-range").all_inner_texts() == ["1\u20134"] * 4
    assert_board_matches_server(board, server, skip=0)

    served, posted = watch_votes(page)
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

    # The open board caught up with the votes by itself (the favourite took part in most).
    favourite_votes = board.locator("tbody[data-rows] tr", has_text=favourite).locator("td.votes")
    expect(favourite_votes).not_to_have_text("0", timeout=15_000)
    board.get_by_label("Live updates").uncheck()  # hold still while it is compared
    board.get_by_role("button", name="Refresh now").click()
    expect(board.locator("[data-updated]")).to_contain_text("Updated")
    board.wait_for_load_state("networkidle")
    ranking = server.call("GET", "/ratings?by=score&limit=25")
    assert ranking[0]["name"] == favourite
    assert ranking[0]["score"] > max(e["score"] for e in ranking[1:])
    assert_board_matches_server(board, server, skip=0)


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
    for _ in range(10):  # past the menu (Vote, Leaderboard, Entities, Projects, ...)
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


def test_leaderboard_marks_provisional_entries_and_reads_each_category(tmp_path: Path, page: Any) -> None:
    from playwright.sync_api import expect

    with running_server(tmp_path) as server:
        made = {
            name: server.call("POST", "/entities/", {"name": name})["id"]
            for name in ("Ada", "Bea", "Cy", "Newcomer", "Untried")
        }
        a, b, c = made["Ada"], made["Bea"], made["Cy"]

        def vote(x: int, y: int, winner: int, category: str) -> None:
            body = {"entity1_id": x, "entity2_id": y, "selected_entity_id": winner, "category": category}
            server.call("POST", "/comparisons/", body)

        for _ in range(4):  # two wins in three for the stronger side, each way round per category
            for x, y in ((a, b), (b, c), (a, c)):
                for winner in (x, x, y):
                    vote(x, y, winner, "helpfulness")
                for winner in (y, y, x):
                    vote(x, y, winner, "style")
        server.call(
            "POST",
            "/comparisons/",
            {"entity1_id": made["Newcomer"], "entity2_id": a, "selected_entity_id": made["Newcomer"]},
        )

        page.goto(server.base + "/leaderboard")
        page.get_by_label("Live updates").uncheck()
        rows = page.locator("tbody[data-rows] tr")
        expect(rows).to_have_count(5)
        # One lucky win does not put the newcomer among the settled: it is listed after them.
        assert board_names(page)[3:] in (["Newcomer", "Untried"], ["Untried", "Newcomer"])
        expect(page.locator("tbody tr.provisional")).to_have_count(2)
        expect(page.locator(".provisional-badge[data-provisional]")).to_have_count(2)
        assert_board_matches_server(page, server, skip=0)

        category = page.get_by_label("Category")
        expect(category.locator("option")).to_have_text(
            ["All votes", "helpfulness (36 votes)", "style (36 votes)"]
        )
        category.select_option("helpfulness")
        expect(rows.first.locator("td.name")).to_have_text("Ada")
        assert_board_matches_server(page, server, skip=0, category="helpfulness")
        category.select_option("style")
        expect(rows.first.locator("td.name")).to_have_text("Cy")
        assert_board_matches_server(page, server, skip=0, category="style")
        assert board_names(page)[:3] == ["Cy", "Bea", "Ada"]

        if os.environ.get("COMPERE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "leaderboard-categories.png"), full_page=True)


def test_leaderboard_controls_for_an_attribute(tmp_path: Path, page: Any) -> None:
    from playwright.sync_api import expect

    from tests.helpers import ANSWER_LENGTHS, length_biased_votes

    with running_server(tmp_path) as server:
        ids = [
            server.call("POST", "/entities/", {"name": f"Answer {k}", "attributes": {"length": length}})["id"]
            for k, length in enumerate(ANSWER_LENGTHS)
        ]
        for i, j, winner in length_biased_votes():
            body = {"entity1_id": ids[i], "entity2_id": ids[j], "selected_entity_id": ids[winner]}
            server.call("POST", "/comparisons/", body)

        page.goto(server.base + "/leaderboard")
        page.get_by_label("Live updates").uncheck()
        rows = page.locator("tbody[data-rows] tr")
        expect(rows).to_have_count(8)
        expect(page.locator("[data-control-note]")).to_be_hidden()
        control = page.get_by_label("Control for")
        expect(control.locator("option")).to_have_text(["Nothing", "length"])
        plain = board_names(page)
        assert plain.index("Answer 7") < plain.index("Answer 0")  # the long answer wins votes

        control.select_option("length")
        expect(page.locator("[data-control-note]")).to_contain_text("length")
        board = server.call("GET", "/ratings?detail=full&skip=0&limit=25&control=length")
        expect(rows.locator("td.name")).to_have_text([e["name"] for e in board["entries"]])
        names = board_names(page)
        assert names.index("Answer 0") < names.index("Answer 7")
        assert rows.locator("[data-unadjusted]").all_inner_texts() == [
            f"was {e['unadjusted_rank']}" for e in board["entries"]
        ]
        (coefficient,) = board["coefficients"]
        expect(page.locator("[data-control-note]")).to_contain_text(
            f"+{coefficient['coefficient']:.2f} logits"
        )

        if os.environ.get("COMPERE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "leaderboard-control.png"), full_page=True)

        control.select_option("")
        expect(page.locator("[data-control-note]")).to_be_hidden()
        expect(page.locator("[data-unadjusted]")).to_have_count(0)


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
    board = board_server.call("GET", "/ratings?detail=full&limit=60")
    assert any(e["tied"] for e in board) and any(e["rank"] > 1 for e in board)
    expect(rows.last.locator("td.rank")).to_contain_text(str(board[-1]["rank"]))
    # Bars on one page share a scale: the lowest interval starts furthest left.
    bars = [rows.nth(i).locator("rect.range").bounding_box() for i in range(10)]
    lows = [e["interval_95"][0] for e in board[50:]]
    assert all(b is not None for b in bars)
    assert min(range(10), key=lambda i: bars[i]["x"]) == min(range(10), key=lambda i: lows[i])

    # Only pages were asked for, never the whole board.
    # The selectors' lists (categories, attributes) are not the board.
    ratings = [
        url for url in ratings if "/ratings/categories" not in url and "/ratings/attributes" not in url
    ]
    assert ratings and all("limit=25" in url and "detail=full" in url for url in ratings)
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


def test_pages_work_on_a_phone_and_login_says_auth_is_off(server: Server, phone: Any) -> None:
    from playwright.sync_api import expect

    page = phone
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
    expect(page.get_by_role("status")).to_contain_text("authentication is off")


ADMIN_PASSWORD = "amber-falcon-meadow-62"
AUTH_SETTINGS = {
    "AUTH_ENABLED": "true",
    "AUTH_COOKIE": "true",
    "SECRET_KEY": "browser-test-secret-key-0123456789-abcdef",
    "BCRYPT_ROUNDS": "10",
}


@contextlib.contextmanager
def auth_enabled_server(folder: Path, redis_role: RedisRole, **settings: str) -> Iterator[Server]:
    """Authentication on; the superuser made with ``compere createsuperuser``; three entities."""
    with running_server(
        folder,
        before=["createsuperuser", "--username", "admin"],
        before_env={"COMPERE_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        **{**AUTH_SETTINGS, **redis_role.env(), **settings},
    ) as running:
        form = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD}).encode()
        with urllib.request.urlopen(running.base + "/auth/token", data=form, timeout=30) as response:
            token = json.loads(response.read())["access_token"]
        for name in ("Oak", "Birch", "Maple"):
            running.call("POST", "/entities/", {"name": name}, token=token)
        yield running


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, redis_by_role: dict[str, RedisRole]
) -> Iterator[Server]:
    """Cookie mode: an httpOnly session cookie and a CSRF cookie."""
    with auth_enabled_server(tmp_path_factory.mktemp("auth"), redis_by_role["webapp"]) as running:
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
    tmp_path_factory: pytest.TempPathFactory, redis_by_role: dict[str, RedisRole], context: Any, page: Any
) -> None:
    """AUTH_COOKIE=false: the login answer's token is kept in sessionStorage and sent as Bearer."""
    from playwright.sync_api import expect

    webapp_redis = redis_by_role["webapp"]
    with auth_enabled_server(tmp_path_factory.mktemp("bearer"), webapp_redis, AUTH_COOKIE="false") as server:
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


# --- Images, long descriptions, fast annotators, small screens, accessibility ---------------------


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A PNG of ``colour`` shading diagonally, so a picture is visibly there when it loads."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # no filter on this row
        for x in range(width):
            shade = 0.45 + 0.55 * (x + y) / (width + height)
            raw.extend(int(channel * shade) for channel in colour)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


class ImageHost:
    """Serves PNGs on loopback from another port: a different origin, as entity images are."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.served: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = images.get(self.path)
                host.served.append(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ImageHost:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


GALLERY = {
    # name: (colours of its images, description)
    "Harbour at sunrise": (
        [(230, 126, 34), (52, 152, 219)],
        "Fishing boats leave the inner harbour while the sun clears the breakwater. "
        "The light is low and warm, the water still, and the gulls are out in force. "
        "Taken from the lighthouse steps at half past six in the morning, handheld. "
        "The second picture is the same view twenty minutes later, after the fog lifted. "
        "Judge the picture as a whole: composition, light, and whether you would print it. "
        "Nothing has been retouched apart from a small exposure correction in the shadows.",
    ),
    "Chrysanthemums in the greenhouse": (
        [(192, 57, 43)],
        "Late-season chrysanthemums under the glass roof of the old greenhouse, with the "
        "potting benches behind them. Shot with a long lens to soften the background; the "
        "flowers were watered just before, so some petals still carry drops. The colours "
        "are as the camera saw them. Consider whether the flowers stand out from the benches "
        "and whether the crop leaves them enough room.",
    ),
    "Mountain lake with wildflowers": (
        [(39, 174, 96)],
        "A small lake below the pass in July, wildflowers along the shore and snow still on "
        "the north faces. The path is just out of frame on the left. A polarising filter "
        "took most of the reflections off the water, so the stones on the bottom show "
        "through near the shore. Compare the depth and the balance between flowers and peaks. "
        "The second attempt, an hour later, lost the light on the peaks, so this is the one.",
    ),
    "Sandstone formations at dusk": (
        [(211, 84, 0)],
        "Wind-carved sandstone lit from the side by the last sun of the day. The shadows "
        "move fast at this hour; this is the third of five frames, picked for the line of "
        "light along the ridge. No filter, no tripod, a little wind. The red of the rock is "
        "what it looked like to the eye; the sky was darker than it appears here, and the "
        "foreground was lifted slightly so the texture of the sand would not disappear.",
    ),
    "Photogrammetry reconstruction": (
        [(142, 68, 173)],
        "A rendered view of a 3D model made from 240 photographs of a stone bridge. The "
        "mesh has 1.2 million faces; textures are at 8K. Judge how faithful and how clean "
        "the surface looks, not the render settings. Holes in the mesh were filled "
        "automatically where the arches meet the water; the moss on the parapet is real "
        "texture, not noise. Look at the edges of the stones and at the mortar lines.",
    ),
}


@pytest.fixture(scope="module")
def image_host() -> Iterator[ImageHost]:
    images = {
        f"/images/{i}-{j}.png": png(64, 48, colour)
        for i, (colours, _) in enumerate(GALLERY.values())
        for j, colour in enumerate(colours)
    }
    with ImageHost(images) as host:
        yield host


@pytest.fixture(scope="module")
def gallery_server(tmp_path_factory: pytest.TempPathFactory, image_host: ImageHost) -> Iterator[Server]:
    """Entities with images on another origin and long descriptions; requests limited to 4 KiB."""
    with running_server(tmp_path_factory.mktemp("gallery"), MAX_BODY_SIZE="4096") as running:
        for i, (name, (colours, description)) in enumerate(GALLERY.items()):
            urls = [f"{image_host.base}/images/{i}-{j}.png" for j in range(len(colours))]
            running.call("POST", "/entities/", {"name": name, "description": description, "image_urls": urls})
        yield running


def test_vote_page_shows_images_and_long_descriptions(
    gallery_server: Server, image_host: ImageHost, page: Any
) -> None:
    from playwright.sync_api import expect

    response = page.goto(gallery_server.base + "/")
    # Images from any http(s) host or data: URL; scripts and everything else only from here.
    assert "img-src 'self' https: http: data:;" in response.headers["content-security-policy"]
    pair = page.locator("section[data-pair]")
    expect(pair).to_be_visible()
    for side in ("left", "right"):
        card = page.locator(f"[data-card={side}]")
        name = card.locator("[data-field=name]").inner_text()
        expect(page.get_by_role("button", name=f"Prefer {name}", exact=True)).to_be_visible()
        images = card.locator("img")
        count = len(GALLERY[name][0])
        expect(images).to_have_count(count)
        for i in range(count):
            image = images.nth(i)
            expect(image).to_be_visible()
            image.evaluate("img => img.decode()")  # loaded (a blocked or broken image rejects)
            assert image.get_attribute("loading") == "lazy"
            assert image.get_attribute("width") and image.get_attribute("height")  # no jump when it loads
            assert name in (image.get_attribute("alt") or "")
            assert image.evaluate("img => img.naturalWidth") == 64
            box = image.bounding_box()
            assert box is not None and box["width"] >= 150 and box["height"] >= 100  # shown, not a thumbnail
    assert any(path.startswith("/images/") for path in image_host.served)

    if os.environ.get("COMPERE_SCREENSHOTS"):
        for _ in range(20):  # skip (no vote) to a pair with the two-picture entity in it
            if "Harbour at sunrise" in page.locator("[data-field=name]").all_inner_texts():
                break
            serial = pair.get_attribute("data-pair-serial") or ""
            page.keyboard.press("s")
            expect(pair).not_to_have_attribute("data-pair-serial", serial)
        page.locator("[data-card] img").last.evaluate("img => img.decode()")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "vote.png"), full_page=True)

    # A long description is clamped, with a button to read all of it that does not vote.
    card = page.locator("[data-card]:has([data-more]:visible)").first
    description = card.locator("[data-field=description]")
    assert description.evaluate("d => d.scrollHeight > d.clientHeight + 1")
    more = card.locator("[data-more]")
    expect(more).to_have_text("Show the whole description")
    expect(more).to_have_attribute("aria-expanded", "false")
    serial = pair.get_attribute("data-pair-serial") or ""
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(more).to_have_text("Show less")
    assert description.evaluate("d => d.scrollHeight <= d.clientHeight + 1")
    assert axe_violations(page) == []
    expect(pair).to_have_attribute("data-pair-serial", serial)
    expect(page.locator("[data-count]")).to_have_text("0")
    more.click()
    expect(more).to_have_attribute("aria-expanded", "false")
    assert description.evaluate("d => d.scrollHeight > d.clientHeight + 1")

    # Clicking a picture is a vote for it.
    card.locator("img").first.click()
    expect(page.locator("[data-count]")).to_have_text("1")
    expect(pair).not_to_have_attribute("data-pair-serial", serial)


def test_fast_key_presses_vote_only_on_pairs_shown_and_the_wait_is_visible(
    gallery_server: Server, page: Any
) -> None:
    """Ten presses faster than pairs arrive: each pair on screen gets one vote, in order;
    the presses made while the next pair is loading are ignored, and the page says so."""
    from playwright.sync_api import expect

    before = len(gallery_server.call("GET", "/comparisons/?limit=1000"))
    held: list[Any] = []
    requested = 0

    def next_pair(route: Any) -> None:
        nonlocal requested
        requested += 1
        if requested == 3:  # the pair after the preloaded one: held back, as on a slow network
            held.append(route)
        else:
            route.continue_()

    page.route("**/mab/next_comparison", next_pair)
    responses, posted = watch_votes(page)
    page.goto(gallery_server.base + "/")
    pair = page.locator("section[data-pair]")
    expect(pair).to_have_attribute("data-next-pair", "ready")  # the first pair shown, the second loaded
    for _ in range(10):
        page.keyboard.press("ArrowLeft")

    count = page.locator("[data-count]")
    expect(count).to_have_text("2")
    expect(pair).to_have_attribute("aria-busy", "true")
    for button in page.locator("[data-side], [data-actions] button").all():
        expect(button).to_have_attribute("aria-disabled", "true")
    waiting = page.locator("[data-waiting]")
    expect(waiting).to_be_visible()
    expect(waiting).to_contain_text("Loading the next pair… 8 key presses or clicks ignored so far")
    # The two votes are on the two pairs shown, in the order they were cast.
    served = [response.json() for response in responses]
    assert [body["pair_token"] for body in posted] == [body["pair_token"] for body in served[:2]]
    stored = sorted(gallery_server.call("GET", "/comparisons/?limit=1000"), key=lambda c: c["id"])[before:]
    assert [(c["entity1_id"], c["entity2_id"], c["selected_entity_id"]) for c in stored] == [
        (body["entity1"]["id"], body["entity2"]["id"], body["entity1"]["id"]) for body in served[:2]
    ]

    assert len(held) == 1
    held[0].continue_()
    expect(pair).to_have_attribute("aria-busy", "false")
    expect(pair).to_have_attribute("data-pair-serial", "3")
    expect(page.locator("[data-side=left]")).to_have_attribute("aria-disabled", "false")
    expect(waiting).to_have_text(
        "8 key presses or clicks made while the pair was loading were ignored; nothing was recorded for them."
    )
    page.keyboard.press("ArrowRight")
    expect(count).to_have_text("3")
    expect(waiting).to_have_text("")


def test_leaderboard_scrolls_sideways_at_390px_without_breaking_names(
    gallery_server: Server, phone: Any
) -> None:
    from playwright.sync_api import expect

    page = phone
    page.goto(gallery_server.base + "/leaderboard")
    page.get_by_label("Live updates").uncheck()
    names = page.locator("tbody[data-rows] td.name")
    expect(names).to_have_count(len(GALLERY))
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # the table scrolls inside its frame...
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # ...not the page
    # Every word of every name is in one piece: a word broken across lines has two boxes.
    broken = names.evaluate_all(
        """cells => cells.flatMap(cell => {
            const text = cell.firstChild;
            return [...text.data.matchAll(/\\S+/g)].filter(word => {
                const range = document.createRange();
                range.setStart(text, word.index);
                range.setEnd(text, word.index + word[0].length);
                return range.getClientRects().length !== 1;
            }).map(word => word[0]);
        })"""
    )
    assert broken == []
    assert axe_violations(page) == []
    if os.environ.get("COMPERE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "leaderboard-phone.png"), full_page=True)
    assert wrap.evaluate("w => { w.scrollLeft = 80; return w.scrollLeft; }") > 0


def test_login_page_with_auth_off_is_a_signpost_not_an_error(gallery_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    base = gallery_server.base
    page.goto(base + "/login")
    note = page.get_by_role("status")
    expect(note).to_contain_text("Sign-in is not needed")
    expect(page.locator("[role=alert]:visible")).to_have_count(0)
    expect(page.get_by_label("Username")).to_be_hidden()
    # Styled as information, not in the error box's colours.
    style = "e => [getComputedStyle(e).color, getComputedStyle(e).borderTopColor]"
    note_colours = note.evaluate(style)
    assert set(note_colours).isdisjoint(page.locator("[data-error]").evaluate(style))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Leaderboard")).to_have_attribute("href", "/leaderboard")
    note.get_by_role("link", name="Go to the vote page").click()
    expect(page).to_have_url(base + "/")
    expect(page.locator("section[data-pair]")).to_be_visible()
    page.goto(base + "/login")
    page.get_by_role("link", name="Compere").click()  # the brand leads home from every page
    expect(page).to_have_url(base + "/")


def test_import_of_a_file_over_the_limit_says_the_limit_and_what_to_use(
    gallery_server: Server, page: Any, console_errors: list[str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    source = tmp_path / "big.csv"
    source.write_text(
        "external_id,name\n" + "".join(f"big-{i},Entity number {i}\n" for i in range(300)), encoding="utf-8"
    )
    assert source.stat().st_size > 4096
    imports: list[str] = []
    page.on("request", lambda r: imports.append(r.url) if "/entities/import" in r.url else None)
    page.goto(gallery_server.base + "/admin")
    expect(page.locator("#import-help")).to_contain_text(
        "Files up to 4 KiB; for larger ones use compere import"
    )
    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_role("button", name="Import").click()
    result = page.locator("[data-import-result]")
    expect(result).to_contain_text("big.csv (")
    expect(result).to_contain_text("the server takes at most 4 KiB in one request")
    expect(result).to_contain_text("compere import big.csv")
    assert imports == []  # not sent: the page knew it would be refused

    # A page that does not know the limit sends the file and explains the server's 413 the same way.
    def without_limit(route: Any) -> None:
        config = route.fetch().json()
        del config["max_body_size"]
        route.fulfill(json=config)

    page.route("**/app/config.json", without_limit)
    page.reload()
    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_role("button", name="Import").click()
    expect(result).to_contain_text("it is over the server's limit for one request")
    expect(result).to_contain_text("compere import big.csv")
    expect(page.locator("[data-error]")).to_be_hidden()
    assert len(imports) == 1
    assert [e for e in console_errors if "413" not in e] == []
    console_errors.clear()  # the refused upload, provoked on purpose
    assert not any(e["name"].startswith("Entity number") for e in gallery_server.call("GET", "/entities/"))


AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core, see tests/vendor/README.md
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page: Any) -> list[str]:
    """An axe-core audit of the page as it is now (WCAG 2.1 A and AA, best practice)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")  # from disk, never the network
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']]}"
        for v in result["violations"]
    ]


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_passes_an_axe_audit(gallery_server: Server, page: Any, path: str) -> None:
    """Every page the app serves, filled with data (images, long descriptions, a board)."""
    from playwright.sync_api import expect

    page.goto(gallery_server.base + path)
    page.wait_for_load_state("networkidle")
    assert axe_violations(page) == []
    expect(page.locator("header.site a.brand")).to_have_attribute("href", "/")  # a way home from every page


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_passes_an_axe_audit_with_auth_on(auth_server: Server, page: Any, path: str) -> None:
    """The same with authentication on: signed in as the superuser, or the login form signed out."""
    if path != "/login":
        form = {"username": "admin", "password": ADMIN_PASSWORD}
        assert page.context.request.post(auth_server.base + "/auth/token", form=form).ok  # sets the cookies
    page.goto(auth_server.base + path)
    page.wait_for_load_state("networkidle")
    assert axe_violations(page) == []


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


# --- projects ---------------------------------------------------------------------------


def admin_token(server: Server) -> str:
    form = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD}).encode()
    with urllib.request.urlopen(server.base + "/auth/token", data=form, timeout=30) as response:
        token: str = json.loads(response.read())["access_token"]
    return token


def refused_status(server: Server, method: str, path: str, **headers: str) -> int:
    request = urllib.request.Request(server.base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_two_projects_keep_their_boards_apart_in_the_pages(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    boards = {"fruit": ["Apple", "Banana", "Cherry"], "tools": ["Hammer", "Saw"]}
    for slug, names in boards.items():
        server.call("POST", "/projects/", {"slug": slug, "name": slug.title()})
        for name in names:
            server.call("POST", f"/projects/{slug}/entities/", {"name": name})

    page.goto(server.base + "/p/fruit/")
    pair = page.locator("section[data-pair]")
    expect(pair).to_be_visible()
    for votes in range(1, 5):
        serial = pair.get_attribute("data-pair-serial") or ""
        page.keyboard.press("ArrowLeft")
        expect(pair).not_to_have_attribute("data-pair-serial", serial)
        expect(page.locator("[data-count]")).to_have_text(str(votes))
    expect(page.locator("[data-status]")).to_contain_text("Vote recorded")
    fruit_ids = {e["id"] for e in server.call("GET", "/projects/fruit/entities/")}
    stored = server.call("GET", "/projects/fruit/comparisons/?limit=100")
    assert len(stored) == 4
    assert all({c["entity1_id"], c["entity2_id"]} <= fruit_ids for c in stored)
    assert server.call("GET", "/projects/tools/comparisons/?limit=100") == []
    # The menu points at this project's pages.
    expect(page.get_by_role("link", name="Leaderboard")).to_have_attribute("href", "/p/fruit/leaderboard")

    page.get_by_role("link", name="Leaderboard").click()
    expect(page).to_have_url(server.base + "/p/fruit/leaderboard")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(3)
    assert sorted(board_names(page)) == boards["fruit"]

    # The switcher lists the projects and opens the same page of the chosen one.
    switcher = page.get_by_label("Project")
    assert {"fruit", "tools"} <= set(switcher.locator("option").evaluate_all("o => o.map(x => x.value)"))
    switcher.select_option("tools")
    expect(page).to_have_url(server.base + "/p/tools/leaderboard")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(2)
    assert sorted(board_names(page)) == boards["tools"]

    # The original pages still show the default board, without the other projects' entities.
    page.goto(server.base + "/leaderboard")
    page.wait_for_load_state("networkidle")
    assert not set(board_names(page)) & {*boards["fruit"], *boards["tools"]}

    # The project list links to both.
    page.goto(server.base + "/p/")
    expect(page.locator("[data-slug=fruit] a").first).to_have_attribute("href", "/p/fruit/")
    expect(page.locator("[data-slug=tools]")).to_contain_text("Tools")


def test_a_share_link_lets_two_anonymous_visitors_vote_as_two_voters(
    auth_server: Server, browser: Any, console_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    token = admin_token(auth_server)
    project = {"slug": "tasting", "name": "Tasting", "visibility": "public", "allow_anonymous": True}
    auth_server.call("POST", "/projects/", project, token=token)
    for name in ("Earl Grey", "Assam", "Sencha"):
        auth_server.call("POST", "/projects/tasting/entities/", {"name": name}, token=token)

    for _browser_visitor in range(2):
        with watched_context(browser, console_errors, viewport={"width": 900, "height": 700}) as ctx:
            page = ctx.new_page()
            page.goto(auth_server.base + "/share/tasting")
            expect(page).to_have_url(auth_server.base + "/share/tasting")  # not sent to log in
            expect(page.locator("[data-project-name]")).to_have_text("Tasting")
            # Nothing else of the app: no menu, no links but the skip link.
            assert page.locator("nav").count() == 0
            assert page.locator("a[href]").evaluate_all("links => links.map(a => a.className)") == [
                "skip-link"
            ]
            pair = page.locator("section[data-pair]")
            expect(pair).to_be_visible()
            for votes in range(1, 3):
                serial = pair.get_attribute("data-pair-serial") or ""
                page.keyboard.press("ArrowRight")
                expect(pair).not_to_have_attribute("data-pair-serial", serial)
                expect(page.locator("[data-count]")).to_have_text(str(votes))
            voter_cookies = [c for c in ctx.cookies(auth_server.base) if "voter" in c["name"]]
            assert len(voter_cookies) == 1 and voter_cookies[0]["httpOnly"]
    assert console_errors == []

    request = urllib.request.Request(
        auth_server.base + "/projects/tasting/export/comparisons",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        stored = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    voters = [line["voter"] for line in stored]
    assert len(voters) == 4
    assert len(set(voters)) == 2  # one voter id per browser, each kept across its votes
    # The default board saw none of it.
    assert not any(
        c["entity1_id"]
        in {e["id"] for e in auth_server.call("GET", "/projects/tasting/entities/", token=token)}
        for c in auth_server.call("GET", "/comparisons/?limit=1000", token=token)
    )


def test_a_share_link_with_a_stale_token_in_the_tab_votes_anonymously(
    auth_server: Server, browser: Any, console_errors: list[str]
) -> None:
    """The server refuses a token that no longer holds (401), even on a public project;
    the share page drops it and carries on as the anonymous voter it serves."""
    from playwright.sync_api import expect

    token = admin_token(auth_server)
    project = {"slug": "stale", "name": "Stale", "visibility": "public", "allow_anonymous": True}
    auth_server.call("POST", "/projects/", project, token=token)
    for name in ("Oolong", "Rooibos"):
        auth_server.call("POST", "/projects/stale/entities/", {"name": name}, token=token)
    with watched_context(browser, console_errors, viewport={"width": 900, "height": 700}) as ctx:
        page = ctx.new_page()
        page.goto(auth_server.base + "/share/stale")
        page.evaluate("sessionStorage.setItem('compere.token', 'not-a-token-any-more')")
        page.reload()
        expect(page.locator("[data-project-name]")).to_have_text("Stale")
        pair = page.locator("section[data-pair]")
        expect(pair).to_be_visible()
        page.keyboard.press("ArrowRight")
        expect(page.locator("[data-count]")).to_have_text("1")
        assert page.evaluate("sessionStorage.getItem('compere.token')") is None
    # The browser reports the refused request (401) as a console error; nothing else.
    assert all("401" in error for error in console_errors), console_errors


def test_owners_change_settings_members_and_keys_from_the_settings_page(
    auth_server: Server, context: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    base = auth_server.base
    token = admin_token(auth_server)
    auth_server.call(
        "POST", "/auth/users/", {"username": "carol", "password": "quiet-harbour-lantern-38"}, token=token
    )
    assert context.request.post(
        base + "/auth/token", form={"username": "admin", "password": ADMIN_PASSWORD}
    ).ok

    # A new project from the project list; its creator owns it.
    page.goto(base + "/p/")
    page.get_by_label("Short name").fill("survey")
    page.get_by_label("Name", exact=True).fill("Survey")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("[data-slug=survey]")).to_contain_text("your role: owner")
    page.locator("[data-slug=survey]").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(base + "/p/survey/settings")

    # Settings: a daily cap, public visibility, the strict trust mode and a top-3 objective,
    # saved through the form once it shows the project.
    expect(page.locator("#p-name")).to_have_value("Survey")
    page.get_by_label("Votes per voter per day").fill("5")
    page.get_by_label("Who can see it").select_option("public")
    page.get_by_label("Weigh votes by their voter's record").select_option("strict")
    page.get_by_label("Pairs serve").select_option("top_k")
    page.get_by_label("K of top_k").fill("3")
    expect(page.get_by_label("Provisional below this many votes")).to_have_attribute("placeholder", "now 5")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-status]")).to_have_text("Settings saved.")
    saved = auth_server.call("GET", "/projects/survey", token=token)
    assert saved["settings"]["daily_vote_cap"] == 5 and saved["visibility"] == "public"
    assert saved["overrides"]["trust_mode"] == "strict" and saved["overrides"]["ranking_objective"] == "top_k"
    assert saved["overrides"]["ranking_top_k"] == 3 and saved["overrides"]["provisional_min_votes"] is None
    page.reload()
    expect(page.get_by_label("Weigh votes by their voter's record")).to_have_value("strict")
    expect(page.get_by_label("K of top_k")).to_have_value("3")
    expect(page.locator("[data-share-link]")).to_have_value(base + "/share/survey")

    # Members: add carol as a voter, then make her an editor, from the keyboard.
    page.get_by_label("Username").fill("carol")
    page.locator("#m-role").select_option("voter")
    page.get_by_label("Username").press("Enter")
    expect(page.locator("tr[data-member=carol]")).to_be_visible()
    page.get_by_label("Role of carol").select_option("editor")
    expect(page.locator("[data-status]")).to_have_text("carol is now editor.")
    members = {
        m["username"]: m["role"] for m in auth_server.call("GET", "/projects/survey/members", token=token)
    }
    assert members["carol"] == "editor"

    # An API key, shown once: it works, it is gone from the page after "Done", it can be revoked.
    auth_server.call("PATCH", "/projects/survey", {"visibility": "private"}, token=token)
    page.get_by_label("Name", exact=True).last.fill("pipeline")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("[data-new-key-value]")
    expect(shown).to_be_visible()
    key = shown.input_value()
    assert len(key) >= 32
    assert refused_status(auth_server, "GET", "/projects/survey/ratings", **{"X-API-Key": key}) == 200
    made = [k for k in auth_server.call("GET", "/auth/api-keys", token=token) if k["name"] == "pipeline"]
    assert made and made[0]["project_id"] == saved["id"]  # a key for this project only
    page.get_by_role("button", name="Done").click()
    expect(shown).to_be_hidden()
    row = page.locator("tbody[data-keys] tr").filter(has_text="pipeline")
    expect(row).to_be_visible()
    page.reload()
    page.wait_for_load_state("networkidle")
    assert key not in page.content()
    row = page.locator("tbody[data-keys] tr").filter(has_text="pipeline")
    prefix = row.get_attribute("data-key") or ""
    assert prefix and key.startswith(prefix)
    row.get_by_role("button", name="Revoke pipeline").click()
    expect(page.locator("[data-status]")).to_have_text("Key pipeline revoked.")
    # Refused: the private board is then as closed to it as to a stranger.
    assert refused_status(auth_server, "GET", "/projects/survey/ratings", **{"X-API-Key": key}) in (401, 404)


@pytest.mark.parametrize("path", sorted(PROJECT_PAGES))
def test_every_project_page_passes_an_axe_audit_with_auth_on(
    auth_server: Server, page: Any, path: str
) -> None:
    token = admin_token(auth_server)
    slug = "audited"
    if not any(p["slug"] == slug for p in auth_server.call("GET", "/projects/", token=token)):
        project = {"slug": slug, "name": "Audited", "visibility": "public", "allow_anonymous": True}
        auth_server.call("POST", "/projects/", project, token=token)
        for name in ("North", "South"):
            auth_server.call("POST", f"/projects/{slug}/entities/", {"name": name}, token=token)
    if not path.startswith("/share/"):
        form = {"username": "admin", "password": ADMIN_PASSWORD}
        assert page.context.request.post(auth_server.base + "/auth/token", form=form).ok
    page.goto(auth_server.base + path.replace(SLUG, slug))
    page.wait_for_load_state("networkidle")
    assert axe_violations(page) == []
