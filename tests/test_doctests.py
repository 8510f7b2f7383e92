"""The examples in hive.actors' docstrings run (hive/'s own run through --doctest-modules:
pyproject.toml; actors/ is installed as hive.actors, so it is imported by that name here)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hive.actors

MODULES = sorted(m.name for m in pkgutil.iter_modules(hive.actors.__path__, prefix="hive.actors."))


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_the_docstrings_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
