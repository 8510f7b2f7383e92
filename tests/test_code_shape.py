"""Units a reader can hold in their head: no function over 60 lines, a docstring on every
public class, and the main interfaces each show a runnable example. Checked for the plugin
modules (runtimes, sandboxes, their registry), notes, login and the Approvals actor's parts."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [
    *sorted((ROOT / "hive" / "runtimes").glob("*.py")),
    *sorted((ROOT / "hive" / "sandboxes").glob("*.py")),
    ROOT / "hive" / "plugins.py",
    ROOT / "hive" / "notes.py",
    ROOT / "hive" / "cli" / "login.py",
    ROOT / "hive" / "wire.py",
    ROOT / "actors" / "approvals.py",
    ROOT / "actors" / "approval_core.py",
    ROOT / "actors" / "approval_questions.py",
    ROOT / "actors" / "approval_requests.py",
    ROOT / "actors" / "scheduled_prompts.py",
]
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
