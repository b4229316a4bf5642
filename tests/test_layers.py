"""Dependencies point downwards: HTTP on top, then services, then domain, storage and
infrastructure. A module may not import from a layer above it, not even inside a
function or under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import compere

PACKAGE = Path(compere.__file__).parent
# Layer -> the compere subpackages (and top-level modules) it must never import.
FORBIDDEN = {
    "domain": {"http", "client", "cli", "services", "storage", "infra"},
    "storage": {"http", "client", "cli", "services"},
    "infra": {"http", "client", "cli", "services"},
    "services": {"http", "client", "cli"},
}


def imported_packages(source: str, package: str = "compere") -> set[tuple[int, str]]:
    """``(line, name)`` for every ``compere.<name>`` a module imports, wherever it does.

    ``package`` is the dotted package the module is in, to resolve relative imports.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # ``from compere import http`` names the subpackage after "import".
            modules = [f"compere.{alias.name}" for alias in node.names] if module == "compere" else [module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "compere" and len(parts) > 1:
                found.add((node.lineno, parts[1]))
    return found


def upward_imports(layer: str) -> list[str]:
    problems = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
        for line, name in sorted(imported_packages(path.read_text(encoding="utf-8"), package)):
            if name in FORBIDDEN[layer]:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports compere.{name}")
    return problems


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_from_a_layer_above_it(layer):
    assert (PACKAGE / layer).is_dir()
    assert upward_imports(layer) == []


def test_the_import_check_sees_every_spelling():
    source = (
        "import compere.http.schemas\n"
        "from compere.http.schemas import EntityCreate\n"
        "from compere import http, settings\n"
        "def later():\n"
        "    from compere.client import Client\n"
    )
    names = {name for _, name in imported_packages(source)}
    assert names == {"http", "settings", "client"}
    relative = "from ..http import schemas\nfrom . import queries\nfrom .. import cli\n"
    names = {name for _, name in imported_packages(relative, "compere.storage")}
    assert names == {"http", "storage", "cli"}
