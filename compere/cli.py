"""Command line: ``python -m compere [serve|migrate]`` (also installed as ``compere``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from compere import __version__
from compere.settings import Settings, SettingsError, load_settings


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
    return parser


def _serve(settings: Settings, host: str, port: int) -> None:
    from aiohttp import web

    from compere.http.app import create_app

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # optional: plain asyncio works too
        loop = asyncio.new_event_loop()
    print(f"Compere {__version__} on http://{host}:{port} (docs at /docs)", flush=True)
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None, loop=loop)


async def _migrate(settings: Settings) -> list[str]:
    from compere.storage.database import connect
    from compere.storage.migrations import migrate

    db = await connect(settings.database_url, pool_min=1, pool_max=2)
    try:
        return await migrate(db)
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"compere: configuration error: {line}", file=sys.stderr)
        return 2
    command = args.command or "serve"
    if command == "migrate":
        from compere.infra.logging import configure_logging
        from compere.storage.database import DatabaseUnavailable
        from compere.storage.migrations import MigrationError

        configure_logging(settings.log_level, settings.log_format)
        try:
            applied = asyncio.run(_migrate(settings))
        except (MigrationError, DatabaseUnavailable) as exc:
            print(f"compere: migration failed: {exc}", file=sys.stderr)
            return 1
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0
    _serve(settings, args.host, args.port)
    return 0
