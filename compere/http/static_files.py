"""Where the files served as they are live: the docs pages and the built-in web app."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
