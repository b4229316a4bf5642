"""The web app end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

One Compere server (a real ``python -m compere serve`` process on SQLite) and one
browser for the module; each test gets a fresh browser context and fails if the page
logs any console error or throws. Set ``COMPERE_SCREENSHOTS=1`` to refresh the images
in ``docs/screenshots/``.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
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

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("webapp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{folder / 'compere.db'}",
        "LOG_REQUESTS": "false",
    }
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
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                break
        except OSError:
            assert proc.poll() is None, (folder / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
    try:
        yield Server(base)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


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


def test_twenty_keyboard_votes_reorder_the_leaderboard(server: Server, context: Any, page: Any) -> None:
    from playwright.sync_api import expect

    for name in ("Alpha", "Bravo", "Charlie", "Delta"):
        server.call("POST", "/entities/", {"name": name, "description": f"{name} is an option"})
    favourite = "Delta"

    # A leaderboard left open in another tab refreshes by itself.
    board = context.new_page()
    board.goto(server.base + "/leaderboard")
    expect(board.locator("tbody[data-rows] tr")).to_have_count(4)
    assert board_names(board) == ["Alpha", "Bravo", "Charlie", "Delta"]  # all tied at the start
    expect(board.locator("tbody tr.tied")).to_have_count(4)

    # Serve every pair with a token (the ranking model's pair_token) and watch what comes back.
    tokens = (f"token-{n}" for n in itertools.count(1))

    def add_token(route: Any) -> None:
        response = route.fetch()
        data = response.json()
        data.setdefault("pair_token", next(tokens))
        route.fulfill(response=response, json=data)

    page.route("**/mab/next_comparison", add_token)
    posted: list[dict[str, Any]] = []
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

    stored = server.call("GET", "/comparisons/?limit=100")
    assert len(stored) == 20
    assert len(posted) == 20
    assert all(body["pair_token"].startswith("token-") for body in posted)
    assert len({body["pair_token"] for body in posted}) == 20  # each served pair's own token
    assert any(c["selected_entity_id"] is not None for c in stored)

    expect(board.locator("tbody[data-rows] tr").first).to_contain_text(favourite, timeout=15_000)
    ranking = [e["name"] for e in server.call("GET", "/ratings")]
    assert ranking[0] == favourite
    assert board_names(board) == ranking
    expect(board.locator("tbody tr").first.locator("td.rank")).to_have_text("1")  # alone at the top

    if os.environ.get("COMPERE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "vote.png"))
        board.screenshot(path=str(SCREENSHOTS / "leaderboard.png"), full_page=True)


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


def test_leaderboard_search_and_pages(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.base + "/leaderboard")
    expect(page.locator("tbody[data-rows] tr").first).to_be_visible()
    page.get_by_label("Search").fill("char")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(1)
    expect(page.locator("tbody[data-rows] tr td.name")).to_have_text("Charlie")
    expect(page.locator("[data-page-status]")).to_have_text("Page 1 of 1 (1 entity)")
    expect(
        page.get_by_role("img", name="No interval available").first
    ).to_be_visible()  # Elo only, no model yet


def test_leaderboard_draws_model_intervals_and_shared_ranks(server: Server, page: Any) -> None:
    """With the Bayesian model's fields (score, uncertainty, shared rank) the page uses them."""
    from playwright.sync_api import expect

    def with_model_fields(route: Any) -> None:
        response = route.fetch()
        entities = response.json()[:3]
        for entity, score, uncertainty, rank in zip(
            entities, (1.2, 0.9, -0.8), (0.2, 0.3, 0.25), (1, 1, 3), strict=True
        ):
            entity.update(score=score, uncertainty=uncertainty, rank=rank)
        route.fulfill(response=response, json=entities)

    page.route("**/ratings?by=score", with_model_fields)
    page.goto(server.base + "/leaderboard")
    rows = page.locator("tbody[data-rows] tr")
    expect(rows).to_have_count(3)
    expect(page.locator("th[data-score-heading]")).to_have_text("Score")
    expect(rows.nth(0).locator("td.rank")).to_contain_text("=1")
    expect(rows.nth(1).locator("td.rank")).to_contain_text("=1")
    expect(rows.nth(2).locator("td.rank")).to_have_text("3")
    expect(page.locator("tbody tr.tied")).to_have_count(2)
    expect(rows.nth(0).locator("td.score")).to_have_text("1.20")
    expect(page.get_by_role("img", name="95% interval 0.81 to 1.59")).to_be_visible()
    bars = [rows.nth(i).locator("rect.range").bounding_box() for i in range(3)]
    assert all(b is not None for b in bars)
    assert bars[2]["x"] < bars[1]["x"] < bars[0]["x"]  # drawn on one shared scale


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
