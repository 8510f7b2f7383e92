"""Units a reader can hold in their head: no function over 60 lines, a docstring on every
public class, and the main interfaces each show a runnable example. Checked for every
product module: hive/, actors/ (installed as hive.actors) and ui/ (hive.ui); not tests."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_DIRS = ("hive", "actors", "ui")
CHECKED = sorted(
    path
    for top in PRODUCT_DIRS
    for path in (ROOT / top).rglob("*.py")
    if "node_modules" not in path.parts  # ui/'s npm packages are not ours
)
MAX_FUNCTION_LINES = 60


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", CHECKED, ids=ids(CHECKED))
def test_no_function_is_longer_than_60_lines(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


@pytest.mark.parametrize("path", CHECKED, ids=ids(CHECKED))
def test_every_public_class_says_what_it_is(path: Path) -> None:
    tree = ast.parse(path.read_text())
    bare = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and not node.name.startswith("_")
        and not ast.get_docstring(node)
    ]
    assert not bare, bare


@pytest.mark.parametrize(
    "module, name",
    [
        ("hive.wire", "Envelope"),
        ("hive.runtimes.base", "Runtime"),
        ("hive.sandboxes.base", "Sandbox"),
        ("hive.config", "AgentConfig"),
        ("hive.actors.supervisor", "ChildSpec"),
    ],
)
def test_the_main_interfaces_carry_a_runnable_example(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    [test] = doctest.DocTestFinder(recurse=False).find(
        obj, name, globs=vars(importlib.import_module(module)).copy()
    )
    assert test.examples, f"{module}.{name} has no example"
    result = doctest.DocTestRunner().run(test)
    assert result.failed == 0


def test_every_product_module_is_checked() -> None:
    """The glob finds the modules the rules are about (not an empty list that checks nothing)."""
    checked = set(ids(CHECKED))
    for module in ("hive/mcp_server.py", "hive/store/retention.py", "ui/app.py"):
        assert module in checked
    assert "actors/supervisor.py" in checked
