"""The shape rules of shared/STYLE.md, checked by walking the code (AST, no imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("cloud", "edge_relay", "tracker_app", "console_tui")
IO_MODULES = {
    "asyncio",
    "socket",
    "time",
    "sqlite3",
    "duckdb",
    "sqlite_utils",
    "aioquic",
    "starlette",
    "threading",
    "selectors",
    "subprocess",
    "os",
    "pathlib",
    "io",
    "random",
    "secrets",
    "datetime",
    "hypercorn",
    "zeroconf",
    "textual",
    "urllib",
    "http",
}


def imports(package: str) -> list[tuple[Path, int, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path, node.lineno, node.module))
    return found


def test_sync_protocol_is_sans_io_and_imports_nothing_of_ours() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path, line, name in imports("sync_protocol")
        if name.split(".")[0] in IO_MODULES | set(COMPONENTS) | {"deploy"}
    ]
    assert not bad, "sync_protocol must stay sans-IO:\n" + "\n".join(bad)


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_import_only_sync_protocol(component: str) -> None:
    others = set(COMPONENTS) - {component}
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path, line, name in imports(component)
        if name.split(".")[0] in others
    ]
    assert not bad, f"{component} imports another component:\n" + "\n".join(bad)


def test_no_module_grows_past_800_lines() -> None:
    packages = (*COMPONENTS, "sync_protocol", "deploy")
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 800
    ]
    assert not long, "split these by concept:\n" + "\n".join(long)
