"""The scripts in examples/ run against a real server on SQLite and PostgreSQL, judged by a
deterministic judge that prefers the item with the larger hidden score, and their final
boards recover the hidden order (Kendall tau at least 0.9 at 20 items).
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compere.client import Client
from tests.helpers import HIDDEN_SCORE, kendall_tau, stored_votes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BUDGET = 600  # verdicts: 30 per item (tau 0.98-0.99 in five runs; 0.90-0.97 at 20 per item)


def example_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def confirmed_lines(journal: Path) -> list[dict[str, object]]:
    """The confirmations in the journal; a last line still being written is not one yet."""
    complete = journal.read_text().splitlines(keepends=True)
    entries = [json.loads(line) for line in complete if line.endswith("\n") and line.strip()]
    return [e for e in entries if "comparison_id" in e]


def printed_board(output: str) -> list[str]:
    """The item names of the leaderboard an example printed last, best first."""
    lines = output.splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "score"])
    return [line.split(maxsplit=3)[3] for line in lines[header + 1 :] if line.strip()]


def test_evaluation_loop_resumes_after_a_crash_stores_each_verdict_once_and_recovers_the_order(
    start_server, database_url, tmp_path
):
    server = start_server()
    with Client(server.url) as compere:
        for name in HIDDEN_SCORE:
            compere.create_entity(name)
    journal = tmp_path / "run.jsonl"
    argv = [
        sys.executable, str(EXAMPLES / "evaluation_loop.py"), server.url,
        "--judge", "tests.helpers:prefer_larger_hidden_score",
        "--budget", str(BUDGET), "--concurrency", "8", "--journal", str(journal),
    ]  # fmt: skip

    # Crash it (SIGKILL, by its PID) a third of the way through.
    loop = subprocess.Popen(argv, env=example_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not journal.exists() or len(confirmed_lines(journal)) < BUDGET // 3:
            assert loop.poll() is None, "the loop ended before it could be interrupted"
            assert time.monotonic() < deadline, "the loop made no progress"
            time.sleep(0.02)
    finally:
        os.kill(loop.pid, signal.SIGKILL)
        loop.wait(10)
    # The narrowest window of a crash: the server stored the vote, the loop never wrote it
    # down. Make sure the resumed run meets it by forgetting the last confirmations.
    lines = journal.read_text().splitlines(keepends=True)
    forgotten = [i for i, line in enumerate(lines) if '"comparison_id"' in line][-5:]
    journal.write_text("".join(line for i, line in enumerate(lines) if i not in forgotten))

    finished = subprocess.run(argv, env=example_env(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    stored, _ = stored_votes(database_url)
    assert sum(stored.values()) == BUDGET  # nothing lost, nothing twice
    confirmed = confirmed_lines(journal)
    ids = [e["comparison_id"] for e in confirmed]
    assert len({e["step"] for e in confirmed}) == BUDGET
    # Re-sent verdicts were answered from the idempotency store with their first id.
    assert None not in ids and len(set(ids)) == BUDGET
    board = printed_board(finished.stdout)
    assert sorted(board) == sorted(HIDDEN_SCORE)
    tau = kendall_tau(board)
    assert tau >= 0.9, tau


def write_items_and_judgements(folder: Path) -> tuple[Path, Path, int]:
    items = folder / "items.csv"
    with items.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["external_id", "name", "description"])
        for name in HIDDEN_SCORE:
            writer.writerow([name.replace(" ", "-"), name, f"the item called {name}"])
    pairs = list(itertools.combinations(HIDDEN_SCORE, 2))
    random.Random(5).shuffle(pairs)
    judgements = folder / "judgements.csv"
    with judgements.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["a", "b", "winner"])
        for a, b in pairs:
            winner = a if HIDDEN_SCORE[a] > HIDDEN_SCORE[b] else b
            writer.writerow([a.replace(" ", "-"), b.replace(" ", "-"), winner.replace(" ", "-")])
    return items, judgements, len(pairs)


def test_import_judgements_loads_items_and_votes_once_even_when_run_twice(
    start_server, database_url, tmp_path
):
    server = start_server()
    items, judgements, count = write_items_and_judgements(tmp_path)
    argv = [sys.executable, str(EXAMPLES / "import_judgements.py"), server.url, str(items), str(judgements)]

    first = subprocess.run(argv, env=example_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "items: 20 new, 0 already there, 0 rejected" in first.stdout
    assert f"judgements: {count} recorded, 0 skipped" in first.stdout
    again = subprocess.run(argv, env=example_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "items: 0 new, 20 already there, 0 rejected" in again.stdout

    stored, rating_sum = stored_votes(database_url)
    assert sum(stored.values()) == count  # the second run stored nothing again
    assert rating_sum == pytest.approx(20 * 1500.0)
    board = printed_board(again.stdout)
    assert sorted(board) == sorted(HIDDEN_SCORE)
    tau = kendall_tau(board)
    assert tau >= 0.9, tau


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_a_journal_line_cut_short_by_a_crash_does_not_swallow_the_next_entry(tmp_path):
    loop = load_example("evaluation_loop")
    path = tmp_path / "run.jsonl"
    first = loop.Journal.open(path)
    first.decided(loop.Verdict(step=0, entity1_id=1, entity2_id=2, winner_id=2, pair_token=None))
    first.stored(0, 41)
    first.close()
    with path.open("a") as out:  # the crash: half a verdict on disk, no newline
        out.write('{"step": 1, "entity1_id": 3, "entity2_id": 4, "winner_id": 3, "pair_t')

    resumed = loop.Journal.open(path)
    assert resumed.verdicts.keys() == {0} and resumed.confirmed == {0}
    resumed.decided(loop.Verdict(step=1, entity1_id=3, entity2_id=5, winner_id=5, pair_token=None))
    resumed.close()

    again = loop.Journal.open(path)
    again.close()
    assert again.run_id == first.run_id
    assert again.verdicts[1].entity2_id == 5  # the verdict written after the crash survives
    assert all(json.loads(line) for line in path.read_text().splitlines())
