"""Shared fixtures: ``make_hive`` starts real supervisors and stops them after the test;
``api`` is a fake Anthropic API for claude agents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake_anthropic import FakeAnthropic
from tests.hive_harness import RunningHive


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    """A fake Anthropic Messages API on loopback, scripted by the test."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def make_hive(tmp_path: Path) -> Iterator[Callable[..., RunningHive]]:
    started: list[RunningHive] = []

    def make(
        config_text: str, env: dict[str, str] | None = None, name: str = "hive"
    ) -> RunningHive:
        hive = RunningHive.start(tmp_path / name, config_text, env)
        started.append(hive)
        return hive

    yield make
    for hive in started:
        # The latest process of each hive (restart() replaces it on the object we hold
        # only if the test kept using the same object; close whatever still runs).
        if hive.process.poll() is None:
            hive.terminate()
