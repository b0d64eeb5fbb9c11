"""The import graph keeps its shape (DESIGN: services never import each other's code): no product
module imports `bench`; no service imports another service or `ops`; `common` imports no service,
`ops` or `bench`. Read from the source with ast, so imports inside functions and
importlib.import_module("...") with a literal name count too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("auth_service", "score_service", "leaderboard_service", "stream_service", "edge")
PRODUCT = ("common", "ops", *SERVICES)


def _forbidden(package: str) -> set[str]:
    """The top-level packages `package` must not import."""
    if package == "common":
        return {*SERVICES, "ops", "bench"}
    if package in SERVICES:
        return {*SERVICES, "ops", "bench"} - {package}
    return {"bench"}  # ops


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, a module of `package`,
    wherever the import stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _violations(package: str) -> list[str]:
    forbidden = _forbidden(package)
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        parent = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, name in _imported(path.read_text(), parent):
            top = name.split(".", 1)[0]
            if top in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", PRODUCT)
def test_the_package_imports_only_what_it_may(package: str) -> None:
    assert (ROOT / package / "__init__.py").exists()
    assert _violations(package) == []


def test_the_checker_sees_every_kind_of_import() -> None:
    """The rules would catch each way a module can reach another package."""
    source = (
        "import bench.report\n"
        "from edge import app\n"
        "def later():\n"
        "    from ops.cli import main\n"
        "    import importlib\n"
        "    importlib.import_module('score_service.ledger')\n"
        "from . import sibling\n"
        "from ..common import config\n"
    )
    assert sorted(_imported(source, "stream_service")) == [
        (1, "bench.report"),
        (2, "edge"),
        (4, "ops.cli"),
        (5, "importlib"),
        (6, "score_service.ledger"),
        (7, "stream_service"),
        (8, "common"),
    ]
