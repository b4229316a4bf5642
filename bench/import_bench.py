"""Import benchmark: ``compere import comparisons`` of an arena battle file in bounded memory.

Generates an arena-format JSON Lines file (``model_a``, ``model_b``, ``winner`` with ties
and both-bad ties, ``judge``, ``tstamp``) of N battles between 100 models, then runs the
real command as a child process into an empty database per backend (a throw-away
PostgreSQL database, a SQLite file in a temporary folder) and reports wall time, votes
per second and the child's peak resident memory (``wait4``), next to the peak of the
same interpreter that only imports the modules the command loads. The target is a peak
under 200 MB for 1,000,000 votes.

    python -m bench.import_bench                          # 1,000,000 votes, SQLite and PostgreSQL
    python -m bench.import_bench --votes 100000 --backend sqlite

Needs PostgreSQL for that backend (``COMPERE_BENCH_POSTGRES_URL``, default the local
server as postgres).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.export_bench import _admin, _env, _run_measured, _url_for

MODELS = 100
WINNERS = ("model_a", "model_b", "model_a", "model_b", "tie", "tie (bothbad)")


def write_battles(path: Path, votes: int, seed: int = 1) -> int:
    """Write ``votes`` arena battles; return the file's size in bytes."""
    rng = random.Random(seed)
    models = [f"model-{i:03d}" for i in range(MODELS)]
    with path.open("w", encoding="utf-8") as out:
        for i in range(votes):
            a, b = rng.sample(models, 2)
            record = {
                "model_a": a,
                "model_b": b,
                "winner": rng.choice(WINNERS),
                "judge": f"judge-{rng.randrange(1000)}",
                "tstamp": 1_700_000_000 + i * 0.5,
            }
            out.write(json.dumps(record) + "\n")
    return path.stat().st_size


def run_import(url: str, path: Path, batch_size: int) -> tuple[float, str, int]:
    """(seconds, the summary line, peak RSS of the importing child in KiB)."""
    argv = [
        sys.executable,
        "-m",
        "compere",
        "import",
        "comparisons",
        str(path),
        "--batch-size",
        str(batch_size),
    ]
    with tempfile.TemporaryFile() as out:
        elapsed, _, peak = _run_measured(argv, _env(url), stdout=out)
        out.seek(0)
        summary = out.read().decode().strip().splitlines()[-1]
    return elapsed, summary, peak


def baseline_rss(url: str) -> int:
    code = "import compere.cli, compere.services.vote_import, compere.storage.postgres, tqdm, aiosqlite"
    return _run_measured([sys.executable, "-c", code], _env(url))[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]

    with tempfile.TemporaryDirectory(prefix="compere-import-bench-") as folder:
        path = Path(folder) / "battles.jsonl"
        size = write_battles(path, args.votes)
        print(f"{args.votes:,} arena battles on {MODELS} models, {size / 1e6:.1f} MB of JSON Lines")
        print(
            f"{'backend':>10} {'votes':>10} {'seconds':>8} {'votes/s':>9} {'peak RSS MiB':>13} {'baseline MiB':>13}"
        )
        for backend in backends:
            name = f"compere_bench_import_{secrets.token_hex(4)}"
            url = f"sqlite:///{Path(folder) / 'bench.db'}" if backend == "sqlite" else _url_for(name)
            if backend == "postgresql":
                _admin(f'CREATE DATABASE "{name}"')
            try:
                subprocess.run(
                    [sys.executable, "-m", "compere", "migrate"],
                    env=_env(url),
                    check=True,
                    capture_output=True,
                )
                start = baseline_rss(url)
                elapsed, summary, peak = run_import(url, path, args.batch_size)
                expected = f"stored {args.votes:,}".replace(",", "")
                assert summary.startswith(expected + ","), summary
                print(
                    f"{backend:>10} {args.votes:>10,} {elapsed:>8.1f} {args.votes / elapsed:>9,.0f} "
                    f"{peak / 1024:>13.1f} {start / 1024:>13.1f}"
                )
            finally:
                if backend == "postgresql":
                    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
