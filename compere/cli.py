"""Command line: ``python -m compere [serve|migrate|import|export|createsuperuser|apikey|rebuild-ratings]``
(also installed as ``compere``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from compere import __version__
from compere.infra.api_keys import SCOPES
from compere.services.transfer import FORMATS, PREFERENCE_FORMATS
from compere.settings import Settings, load_settings_or_report, redact_url

# Read instead of prompting, for scripts and containers; never taken from the command line
# (it would show in `ps` and in shell history).
SUPERUSER_PASSWORD_VARIABLE = "COMPERE_SUPERUSER_PASSWORD"
# Commands that work on the service's data name the database they use. Those that only
# read what is there refuse a SQLite file that does not exist, rather than create an empty
# one wherever they happen to run; import and createsuperuser may set up a new database.
DATA_COMMANDS = frozenset({"import", "export", "createsuperuser", "apikey", "rebuild-ratings"})
READING_COMMANDS = frozenset({"export", "apikey", "rebuild-ratings"})
# Start-up failures to listen, reported in one line instead of a traceback.
_LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


def _parser() -> argparse.ArgumentParser:
    listen = argparse.ArgumentParser(add_help=False)
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser = argparse.ArgumentParser(
        prog="compere", description="Pairwise comparison ranking service.", parents=[listen]
    )
    parser.add_argument("--version", action="version", version=f"compere {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP server (the default)", parents=[listen])
    commands.add_parser("migrate", help="apply the schema files in sql/ to DATABASE_URL")
    importer = commands.add_parser(
        "import",
        help="add entities (re-runnable: matched on external_id), or with `comparisons` a vote log "
        "(a comparisons export or arena battles, keeping verdicts, categories and voters, weighed by "
        "TRUST_MODE; resumable), from a CSV or JSON Lines file",
        usage="compere import [comparisons|entities] FILE [options]",
    )
    importer.add_argument("what", metavar="[comparisons|entities]", help="what the file holds (entities)")
    importer.add_argument("file", nargs="?", help="the file to read, or - for standard input")
    importer.add_argument("--format", choices=FORMATS, help="default: csv for *.csv, else jsonl")
    importer.add_argument(
        "--batch-size", type=_positive, help="rows per transaction (entities 500, comparisons 2000)"
    )
    importer.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="comparisons: report a bad line and go on (up to --max-rejected), or stop at the first (skip)",
    )
    importer.add_argument(
        "--max-rejected",
        type=_count,
        default=100,
        help="comparisons with --on-error skip: stop before rejecting more lines than this (100)",
    )
    importer.add_argument(
        "--project", default="default", metavar="SLUG", help="the project to import into (default)"
    )
    importer.add_argument(
        "--source",
        help="comparisons: the name this file's progress is kept under (default: a digest of its "
        "first record); a re-run under the same name resumes",
    )
    exporter = commands.add_parser(
        "export",
        help="write comparisons or entities as JSON Lines or CSV, or preference data (dpo, arena)",
    )
    exporter.add_argument("what", choices=("comparisons", "entities", "preferences"))
    exporter.add_argument(
        "--format",
        choices=(*FORMATS, *PREFERENCE_FORMATS),
        help="comparisons, entities: jsonl (default) or csv; preferences: dpo or arena (required)",
    )
    exporter.add_argument(
        "--ties", choices=("skip", "keep"), default="skip", help="preferences --format dpo: ties (skip)"
    )
    exporter.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
    exporter.add_argument("--batch-size", type=_positive, default=5000, help="rows per query (5000)")
    exporter.add_argument(
        "--project", default="default", metavar="SLUG", help="the project to export (default)"
    )
    admin = commands.add_parser(
        "createsuperuser",
        help=f"create a superuser (password prompted without echo, or from {SUPERUSER_PASSWORD_VARIABLE})",
    )
    admin.add_argument("--username", help="prompted for when omitted on a terminal")
    admin.add_argument("--email", help="optional e-mail address")
    admin.add_argument("--full-name", help="optional display name")
    keys = commands.add_parser("apikey", help="create, list or revoke a user's API keys")
    key_commands = keys.add_subparsers(dest="apikey_command", required=True)
    create = key_commands.add_parser("create", help="make a key; it is printed once, keep it")
    create.add_argument("--user", required=True, help="the username the key acts for")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        required=True,
        help="read, vote, write, admin (repeatable)",
    )
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument("--project", type=_positive, help="the one project id it acts on (default: all)")
    create.add_argument("--expires", help="ISO 8601 moment with a zone, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--rate-limit", type=_positive, help="requests per --rate-window seconds")
    create.add_argument("--rate-window", type=_positive, help="seconds (default 60)")
    lister = key_commands.add_parser("list", help="a user's keys by prefix (never the keys)")
    lister.add_argument("--user", required=True)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id: it stops working at once")
    revoke.add_argument("id", type=_positive)
    commands.add_parser(
        "rebuild-ratings",
        help="recompute every rating and strength from the comparison log (after a model change)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError("must be from 1 to 100000")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError("must be from 0 to 10000000")
    return value


def _progress(total: int | None, unit: str) -> Any:
    """A progress bar on standard error when it is a terminal; silent in pipes and logs.

    Rows are plain counts ("1500/3000 rows"); bytes are scaled ("1.50MB/3.00MB").
    """
    from tqdm import tqdm

    in_bytes = unit == "B"
    return tqdm(
        total=total,
        unit=unit if in_bytes else f" {unit}",
        unit_scale=in_bytes,
        unit_divisor=1000,
        bar_format=(
            "{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]"
            if in_bytes and total is not None
            else None
        ),
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )


def _serve(settings: Settings, host: str, port: int) -> None:
    from aiohttp import web

    from compere.http.app import create_app

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # optional: plain asyncio works too
        loop = asyncio.new_event_loop()

    def listening(_: str) -> None:  # called by aiohttp once the socket is bound
        print(f"Compere {__version__} on http://{host}:{port} (docs at /docs)", flush=True)

    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=listening, loop=loop)


def _run_serve(settings: Settings, host: str, port: int) -> int:
    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    try:
        _serve(settings, host, port)
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        reason = os.strerror(exc.errno).lower()
        print(
            f"compere: cannot listen on {host}:{port}: {reason} (choose another with --port)", file=sys.stderr
        )
        return 1
    except DatabaseError as exc:
        print(f"compere: cannot start: {exc} ({redact_url(settings.database_url)})", file=sys.stderr)
        return 1
    except MigrationError as exc:
        print(f"compere: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _database_in_use(settings: Settings) -> tuple[str, bool]:
    """(what to call the database in messages, whether it exists or may be created).

    A SQLite file is named by its absolute path, so a command run from the wrong folder
    says where it looked.
    """
    if not settings.uses_sqlite:
        return redact_url(settings.database_url), True
    path = Path(settings.database_url[len("sqlite:///") :])
    if str(path) == ":memory:":
        return settings.database_url, True
    return f"sqlite:///{path.resolve()}", path.is_file()


async def _migrate(settings: Settings) -> list[str]:
    from compere.storage.connect import open_database
    from compere.storage.migrations import migrate

    db = await open_database(settings, pool_max=2)
    try:
        return await migrate(db)
    finally:
        await db.close()


async def _open_database(settings: Settings) -> Any:
    from compere.storage.connect import open_database
    from compere.storage.migrations import migrate

    db = await open_database(settings, pool_max=2)
    if settings.migrate_on_start:
        await migrate(db)
    return db


async def _import(settings: Settings, stream: BinaryIO, fmt: str, batch_size: int, slug: str) -> Any:
    """Import entity records into the project ``slug``; return the :class:`ImportSummary`.

    Progress is shown in bytes of a file of known size, else in rows read.
    """
    from compere.services.transfer import import_records, read_entity_records, text_lines
    from compere.services.webhooks import IMPORT_FINISHED, announce

    size = _file_size(stream)
    db = await _open_database(settings)
    try:
        project = await _writable_project(db, settings, slug)
        with _progress(size, "B" if size is not None else "rows") as bar:
            summary = await import_records(
                db,
                project.id,
                read_entity_records(text_lines(stream, bar.update if size is not None else None), fmt),
                rating=settings.elo_initial_rating,
                prior=project.settings.prior,
                batch_size=batch_size,
                progress=bar.update if size is None else None,
            )
        counts = {
            "created": summary.created,
            "existing": summary.existing,
            "rejected_count": len(summary.rejected),
        }
        await announce(db, IMPORT_FINISHED, {**counts, "source": "cli"}, project.id)
        return summary
    finally:
        await db.close()


class _ProjectRefused(Exception):
    """The ``--project`` named cannot be used: a usage error (exit status 2)."""


async def _writable_project(db: Any, settings: Settings, slug: str) -> Any:
    """The project ``--project`` names; :class:`_ProjectRefused` when there is none or it
    is archived (read-only for every route, so for these commands too)."""
    from compere.services.projects import project_from_row
    from compere.storage import projects

    row = await projects.by_slug(db, slug)
    if row is None:
        raise _ProjectRefused(f"there is no project {slug!r} (--project takes a project's slug)")
    project = project_from_row(row, settings)
    if project.archived:
        raise _ProjectRefused(f"project {slug!r} is archived: it is read-only until a superuser restores it")
    return project


def _file_size(stream: BinaryIO) -> int | None:
    """The size of a regular file; None for a pipe or terminal."""
    import os
    import stat

    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


async def _rebuild(settings: Settings) -> int:
    from compere.services.projects import project_from_row
    from compere.storage import projects
    from compere.storage.bulk import rebuild_ratings

    db = await _open_database(settings)
    try:
        replayed = 0
        rows = await projects.visible(
            db, user_id=None, everything=True, archived=False, skip=0, limit=1_000_000
        )
        rows += await projects.visible(
            db, user_id=None, everything=True, archived=True, skip=0, limit=1_000_000
        )
        for row in rows:  # each project with its own Elo K and prior
            own = project_from_row(row, settings).settings
            replayed += await rebuild_ratings(
                db,
                int(row["id"]),
                k_factor=own.elo_k_factor,
                initial_rating=settings.elo_initial_rating,
                prior=own.prior,
                trust=own.trust,
            )
        return replayed
    finally:
        await db.close()


async def _export(settings: Settings, what: str, fmt: str, out: TextIO, batch_size: int, slug: str) -> int:
    """Stream a project's table to ``out`` batch by batch; return the number of rows written."""
    from compere.services.transfer import RowEncoder, comparison_export_columns, export_columns
    from compere.storage import bulk

    db = await _open_database(settings)
    written = 0
    try:
        project_id = (await _writable_project(db, settings, slug)).id
        live_only = what == "entities"  # deleted entities leave exports; their votes stay
        columns = await db.column_names(what)
        total = await bulk.count_rows(db, project_id, what, live_only=live_only)
        comparisons = what == "comparisons"
        encoder = RowEncoder(
            fmt, comparison_export_columns(columns) if comparisons else export_columns(columns)
        )
        out.write(encoder.header())
        if comparisons:
            batches = bulk.iter_comparisons_for_export(db, project_id, columns, batch_size=batch_size)
        else:
            batches = bulk.iter_rows(
                db.reader(), project_id, what, columns, live_only=live_only, batch_size=batch_size
            )
        with _progress(total, "rows") as bar:
            async for rows in batches:
                out.write(encoder.encode(rows))
                written += len(rows)
                bar.update(len(rows))
        out.flush()
    finally:
        await db.close()
    return written


async def _export_preferences(
    settings: Settings, fmt: str, keep_ties: bool, out: TextIO, batch_size: int, slug: str
) -> int:
    """Write the vote log as a preference dataset; return the number of records written."""
    from compere.services.transfer import encode_preferences, judge_key
    from compere.storage import bulk

    db = await _open_database(settings)
    written = 0
    key = judge_key(settings.secret_key)
    try:
        project_id = (await _writable_project(db, settings, slug)).id
        # dpo reads only the votes between responses to one prompt: no total known ahead.
        total = await bulk.count_rows(db, project_id, "comparisons") if fmt == "arena" else None
        with _progress(total, "votes") as bar:
            batches = bulk.iter_votes_with_entities(
                db.reader(), project_id, same_prompt=fmt == "dpo", batch_size=batch_size
            )
            async for rows in batches:
                text = encode_preferences(rows, fmt, keep_ties=keep_ties, judge_key=key)
                out.write(text)
                written += text.count("\n")  # one record a line; JSON escapes newlines inside
                bar.update(len(rows))
        out.flush()
    finally:
        await db.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings_or_report()
    if settings is None:
        return 2
    command = args.command or "serve"
    if command in DATA_COMMANDS:
        database, exists = _database_in_use(settings)
        if not exists and command in READING_COMMANDS:
            print(
                f"compere: {command}: no database at {database}; run it where the database is, "
                "set DATABASE_URL, or create one with `compere migrate`",
                file=sys.stderr,
            )
            return 1
        print(f"compere: database {database}", file=sys.stderr)
    if command == "migrate":
        from compere.infra.logging import configure_logging
        from compere.storage.database import DatabaseError
        from compere.storage.migrations import MigrationError

        configure_logging(settings.log_level, settings.log_format)
        try:
            applied = asyncio.run(_migrate(settings))
        except (MigrationError, DatabaseError) as exc:
            print(f"compere: migration failed: {exc}", file=sys.stderr)
            return 1
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0
    if command == "import":
        return _run_import(settings, args)
    if command == "export":
        return _run_export(settings, args)
    if command == "createsuperuser":
        return _run_createsuperuser(settings, args)
    if command == "apikey":
        return _run_apikey(settings, args)
    if command == "rebuild-ratings":
        replayed = asyncio.run(_rebuild(settings))
        print(f"rebuilt ratings from {replayed} comparisons")
        return 0
    return _run_serve(settings, args.host, args.port)


def _run_import(settings: Settings, args: argparse.Namespace) -> int:
    from compere.services.transfer import ImportStopped, guess_format
    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    if args.file is None:  # `compere import FILE`: entities, as before
        args.what, args.file = "entities", args.what
    if args.what not in ("entities", "comparisons"):
        print(
            f"compere: import: what to import is comparisons or entities, not {args.what!r}", file=sys.stderr
        )
        return 2
    if args.what == "comparisons":
        return _run_import_votes(settings, args)
    args.batch_size = args.batch_size or 500
    fmt = args.format or guess_format(args.file)
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"compere: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        with stream:
            summary = asyncio.run(_import(settings, stream, fmt, args.batch_size, args.project))
    except _ProjectRefused as exc:
        print(f"compere: import: {exc}", file=sys.stderr)
        return 2
    except (DatabaseError, MigrationError) as exc:
        print(f"compere: import failed: {exc}", file=sys.stderr)
        return 1
    rejected = summary.rejected
    for item in rejected[:20]:
        print(f"compere: line {item.line} skipped: {item.reason}", file=sys.stderr)
    if len(rejected) > 20:
        print(f"compere: ... and {len(rejected) - 20} more lines skipped", file=sys.stderr)
    stopped = summary.stopped
    if isinstance(stopped, ImportStopped):
        print(
            f"compere: import stopped at line {stopped.line}: {stopped.reason}. The lines before it "
            f"are counted below; nothing from line {stopped.line} on was imported. Fix the file and "
            "run the import again: entities already imported are skipped.",
            file=sys.stderr,
        )
    elif stopped is not None:
        print(f"compere: cannot import {args.file}: {stopped}", file=sys.stderr)
    print(f"created {summary.created}, already present {summary.existing}, rejected {len(rejected)}")
    return 1 if rejected or stopped else 0


async def _import_votes(settings: Settings, stream: BinaryIO, args: argparse.Namespace, summary: Any) -> None:
    """Import a vote log into ``summary`` (filled in as batches commit, so it is right
    even when this is interrupted), on the project ``--project`` names (default: default)."""
    from compere.infra.voters import VoterIds
    from compere.services.transfer import guess_format
    from compere.services.vote_import import MAX_LINE_BYTES, VoteImportOptions, file_lines, import_votes

    size = _file_size(stream)
    db = await _open_database(settings)
    try:
        project = await _writable_project(db, settings, args.project)
        options = VoteImportOptions(
            fmt=args.format or guess_format(args.file),
            k_factor=project.settings.elo_k_factor,
            rating=settings.elo_initial_rating,
            prior=project.settings.prior,
            max_rejected=0 if args.on_error == "stop" else args.max_rejected,
            source=args.source,
            batch_size=args.batch_size or 2000,
            project_id=project.id,
            trust=settings.trust,
            # Judges are kept as the server hashes them; without SECRET_KEY there is no
            # stable key to hash them with (a note says so after the import).
            judge_voter=VoterIds(settings.secret_key).judge if settings.secret_key else None,
        )
        with _progress(size, "B" if size is not None else "lines") as bar:
            lines = file_lines(lambda: stream.readline(MAX_LINE_BYTES + 1))
            await import_votes(db, lines, options, summary, progress=bar.update if size is not None else None)
    finally:
        await db.close()


def _run_import_votes(settings: Settings, args: argparse.Namespace) -> int:
    """``compere import comparisons FILE``: prints rejected lines and a summary line, always."""
    from compere.services.vote_import import VoteFileError, VoteImportSummary
    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    if args.source is not None and not 1 <= len(args.source) <= 200:
        print("compere: import: --source must be 1 to 200 characters", file=sys.stderr)
        return 2
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"compere: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    summary = VoteImportSummary()
    status = 0
    try:
        with stream:
            asyncio.run(_import_votes(settings, stream, args, summary))
    except _ProjectRefused as exc:
        print(f"compere: import: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        summary.stopped, status = "interrupted", 130
    except VoteFileError as exc:
        print(f"compere: cannot import {args.file}: {exc}", file=sys.stderr)
        status = 1
    except (DatabaseError, MigrationError) as exc:
        summary.stopped, status = f"the database failed: {exc}", 1
    if summary.kind == "arena" and not settings.secret_key:
        print("compere: judges were not kept as voters: set SECRET_KEY to keep them", file=sys.stderr)
    for item in summary.rejected[:20]:
        print(f"compere: line {item.line} rejected: {item.reason}", file=sys.stderr)
    if summary.rejected_count > 20:
        print(f"compere: ... and {summary.rejected_count - 20} more lines rejected", file=sys.stderr)
    if summary.stopped is not None:
        print(
            f"compere: import stopped ({summary.stopped}). Every line up to {summary.lines_done} is done; "
            "run the same command again to go on from there (nothing is stored twice).",
            file=sys.stderr,
        )
    print(
        f"stored {summary.stored}, already imported {summary.already_imported}, "
        f"rejected {summary.rejected_count}, entities created {summary.entities_created}"
    )
    if status == 0 and (summary.rejected_count or summary.stopped is not None):
        status = 1
    return status


def _run_export(settings: Settings, args: argparse.Namespace) -> int:
    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    preferences = args.what == "preferences"
    allowed = PREFERENCE_FORMATS if preferences else FORMATS
    fmt = args.format or ("jsonl" if not preferences else None)
    if fmt not in allowed:
        print(f"compere: export {args.what} needs --format {' or '.join(allowed)}", file=sys.stderr)
        return 2
    try:
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        print(f"compere: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        with out if out is not sys.stdout else contextlib.nullcontext(out):
            if preferences:
                keep_ties = args.ties == "keep"
                written = asyncio.run(
                    _export_preferences(settings, fmt, keep_ties, out, args.batch_size, args.project)
                )
            else:
                written = asyncio.run(_export(settings, args.what, fmt, out, args.batch_size, args.project))
    except BrokenPipeError:
        return 0  # the reader (head, less) stopped early: not an error
    except _ProjectRefused as exc:
        if out is not sys.stdout:
            Path(args.output).unlink(missing_ok=True)  # nothing was written to it
        print(f"compere: export: {exc}", file=sys.stderr)
        return 2
    except (DatabaseError, MigrationError) as exc:
        print(f"compere: export failed: {exc}", file=sys.stderr)
        return 1
    print(f"exported {written} {fmt + ' records' if preferences else args.what}", file=sys.stderr)
    return 0


class _CommandError(Exception):
    """A problem to report on one line, with exit status 1."""


def _ask_username(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise _CommandError("--username is required when there is no terminal to ask on")
    return input("Username: ").strip()


def _ask_password(environ: Mapping[str, str]) -> str:
    """The password from the environment, else typed twice without echo."""
    import getpass

    from_env = environ.get(SUPERUSER_PASSWORD_VARIABLE)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise _CommandError(
            f"no terminal to ask for a password on; set {SUPERUSER_PASSWORD_VARIABLE} instead"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise _CommandError("the two passwords differ")
    return first


def _new_superuser(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """The validated request: the same rules as POST /auth/users/ (schema and password policy)."""
    from pydantic import ValidationError

    from compere.domain.inputs import UserCreate, issue_message
    from compere.infra.passwords import password_problem

    username = _ask_username(args.username)
    password = _ask_password(environ)
    try:
        body = UserCreate.model_validate(
            {
                "username": username,
                "password": password,
                "email": args.email,
                "full_name": args.full_name,
                "is_superuser": True,
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise _CommandError(f"{'.'.join(str(p) for p in first['loc'])}: {issue_message(first)}") from None
    problem = password_problem(body.password, min_length=settings.password_min_length, username=body.username)
    if problem:
        raise _CommandError(f"password {problem}")
    return body


async def _create_superuser(settings: Settings, body: Any) -> Any:
    from compere.infra.passwords import PasswordHasher
    from compere.storage import users

    hashed = await PasswordHasher(settings.bcrypt_rounds).hash(body.password)
    db = await _open_database(settings)
    try:
        return await users.create_user(
            db,
            username=body.username,
            email=body.email,
            full_name=body.full_name,
            hashed_password=hashed,
            creator_is_superuser=True,  # whoever runs this command controls the database
            make_superuser=True,
        )
    except users.DuplicateUser as exc:
        raise _CommandError(f"a user with this {exc.field} already exists") from None
    finally:
        await db.close()


def _run_createsuperuser(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    try:
        body = _new_superuser(settings, args, os.environ)
        row = asyncio.run(_create_superuser(settings, body))
    except _CommandError as exc:
        print(f"compere: createsuperuser: {exc}", file=sys.stderr)
        return 1
    except (DatabaseError, MigrationError) as exc:
        print(f"compere: createsuperuser failed: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("\ncompere: createsuperuser: cancelled", file=sys.stderr)
        return 1
    print(f"created superuser {row['username']} (id {row['id']})")
    return 0


async def _apikey(settings: Settings, args: argparse.Namespace) -> list[str]:
    """Lines to print for ``compere apikey ...``."""
    from datetime import datetime

    from compere.services.api_keys import KeyRequestError, issue_key
    from compere.storage import api_keys, users

    db = await _open_database(settings)
    try:
        if args.apikey_command == "revoke":
            row = await api_keys.get_key(db, args.id)
            if row is None:
                raise _CommandError(f"no API key with id {args.id}")
            await api_keys.revoke_key(db, args.id)
            return [f"revoked {row['prefix']} (id {row['id']})"]
        user = await users.credentials(db, args.user)
        if user is None:
            raise _CommandError(f"no user named {args.user!r}")
        if args.apikey_command == "list":
            return [
                "\t".join(
                    str(value)
                    for value in (
                        row["id"],
                        row["prefix"],
                        ",".join(row["scopes"]),
                        row["project_id"] or "all",
                        row["expires_at"] or "-",
                        row["last_used_at"] or "never",
                        "revoked" if row["revoked_at"] else "active",
                    )
                )
                for row in await api_keys.keys_of(db, user["id"])
            ]
        try:
            expires = datetime.fromisoformat(args.expires) if args.expires else None
            row, key = await issue_key(
                db,
                user_id=user["id"],
                scopes=args.scope,
                name=args.name,
                project_id=args.project,
                expires_at=expires,
                rate_limit=args.rate_limit,
                rate_window=args.rate_window,
            )
        except (KeyRequestError, ValueError) as exc:
            raise _CommandError(str(exc)) from None
        # The key alone on standard output (for scripts); what it is on standard error.
        print(
            f"API key {row['prefix']} (id {row['id']}) for {args.user}: shown once, keep it", file=sys.stderr
        )
        return [key]
    finally:
        await db.close()


def _run_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from compere.storage.database import DatabaseError
    from compere.storage.migrations import MigrationError

    try:
        lines = asyncio.run(_apikey(settings, args))
    except _CommandError as exc:
        print(f"compere: apikey {args.apikey_command}: {exc}", file=sys.stderr)
        return 1
    except (DatabaseError, MigrationError) as exc:
        print(f"compere: apikey {args.apikey_command} failed: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
