"""Notes compaction: past a size, an agent's state/notes.md is rewritten shorter by a short
secondary claude session (the REAL CLI against the fake API), after the turn and outside it,
with a backup kept; notes the agent changed meanwhile are never overwritten."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hive.notes import (
    KEEP_BACKUPS,
    CompactionError,
    backups,
    extract_notes,
    install,
    needs_compaction,
    notes_path,
    read_answer,
)
from hive.process import AgentPaths
from hive.runtimes.claude import ClaudeRuntime
from tests.claude_hive import ClaudeHive, claude_agent, hive_toml
from tests.fake_anthropic import (
    FakeAnthropic,
    Hang,
    RecordedRequest,
    Reply,
    Text,
    echo_text,
    server_error,
)
from tests.hive_harness import RunningHive

COMPACTOR = "You compact the working notes"
SHORT_NOTES = "# Notes\n- shipping v2: tests green, release on Friday\n"
LONG_NOTES = "# Notes\n" + "".join(
    f"- {i}: looked at module {i}, nothing to change there\n" for i in range(120)
)


# --- pieces ----------------------------------------------------------------------------------


@pytest.fixture
def paths(tmp_path: Path) -> AgentPaths:
    p = AgentPaths.for_agent("alice", tmp_path / "hive", tmp_path / "run")
    p.ensure()
    return p


def cli_result(text: str, is_error: bool = False) -> bytes:
    return json.dumps({"type": "result", "is_error": is_error, "result": text}).encode() + b"\n"


def rewrite_in(stdout: bytes) -> str:
    """The notes in the CLI's answer: what the claude runtime reads, then what notes keeps."""
    return extract_notes(read_answer(ClaudeRuntime(), stdout))


def test_the_rewrite_is_read_from_the_cli_result() -> None:
    assert rewrite_in(cli_result("# Notes\n- a")) == "# Notes\n- a\n"
    assert rewrite_in(cli_result("```markdown\n# Notes\n- a\n```")) == "# Notes\n- a\n"
    for bad, why in [
        (cli_result("API Error: 500", is_error=True), "model call failed"),
        (cli_result("   "), "empty"),
        (b"Error: something broke\n", "not JSON"),
        (b"", "no result"),
    ]:
        with pytest.raises(CompactionError, match=why):
            rewrite_in(bad)


def test_only_notes_past_the_limit_need_compaction(paths: AgentPaths) -> None:
    assert not needs_compaction(paths, 100)  # no notes yet
    notes_path(paths).write_text("x" * 100)
    assert not needs_compaction(paths, 100)
    notes_path(paths).write_text("x" * 101)
    assert needs_compaction(paths, 100)
    assert not needs_compaction(paths, 0)  # 0: never


def test_install_keeps_a_backup_and_never_overwrites_newer_notes(paths: AgentPaths) -> None:
    notes_path(paths).write_text(LONG_NOTES)
    saved = install(paths, LONG_NOTES, SHORT_NOTES)
    assert saved is not None and saved.read_text() == LONG_NOTES
    assert notes_path(paths).read_text() == SHORT_NOTES

    # The agent wrote more since the rewrite began: its notes win.
    notes_path(paths).write_text(SHORT_NOTES + "- one more thing\n")
    assert install(paths, SHORT_NOTES, "# shorter\n") is None
    assert notes_path(paths).read_text().endswith("- one more thing\n")


def test_only_the_latest_backups_are_kept(paths: AgentPaths) -> None:
    for i in range(KEEP_BACKUPS + 3):
        text = f"version {i}\n" * 10
        notes_path(paths).write_text(text)
        assert install(paths, text, f"v{i}\n") is not None
    kept = backups(paths)
    assert len(kept) == KEEP_BACKUPS
    assert kept[-1].read_text().startswith(f"version {KEEP_BACKUPS + 2}\n")


# --- through a real supervisor -----------------------------------------------------------------


def answer_compaction_with(reply: Reply) -> Callable[[RecordedRequest], Reply]:
    """The fake's default: ``reply`` to the compaction session, an echo to agent turns."""

    def answer(request: RecordedRequest) -> Reply:
        return reply if COMPACTOR in request.system_text else echo_text(request)

    return answer


def start_with_long_notes(
    make_hive: Callable[..., RunningHive], api: FakeAnthropic, **settings: object
) -> tuple[ClaudeHive, Path]:
    config = hive_toml(claude_agent("alice"), notes_compact_bytes=2000, **settings)
    hive = ClaudeHive(make_hive(config, env=api.env()), api)
    notes = hive.agent_dir("alice") / "state" / "notes.md"
    notes.write_text(LONG_NOTES)
    return hive, notes


def compaction_requests(api: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in api.requests if COMPACTOR in r.system_text]


def event_of(hive: ClaudeHive, kind: str) -> dict[str, object]:
    [event] = hive.wait_until(
        lambda: [e for e in hive.events("alice") if e["kind"] == kind], what=f"a {kind} event"
    )
    data: dict[str, object] = event["data"]
    return data


def test_long_notes_are_rewritten_after_the_turn_by_a_secondary_session(
    make_hive: Callable[..., RunningHive], api: FakeAnthropic
) -> None:
    api.default = answer_compaction_with(Hang(Text(SHORT_NOTES)))
    hive, notes = start_with_long_notes(make_hive, api, notes_compact_model="claude-notes")
    hive.admin("send", to="alice", body="carry on")

    # The turn ends while the rewrite is still waiting on the model: it runs outside it.
    [turn] = hive.wait_turns("alice", 1)
    assert turn["exit_class"] == "ok"
    [request] = hive.wait_until(lambda: compaction_requests(api), what="the rewrite request")
    assert hive.status("alice")["turn_state"] == "idle"
    assert notes.read_text() == LONG_NOTES
    api.release()

    event = event_of(hive, "notes_compacted")
    assert notes.read_text() == SHORT_NOTES
    backup = Path(str(event["backup"]))
    assert backup.parent == notes.parent / "notes-backups" and backup.read_text() == LONG_NOTES
    assert event["bytes_before"] == len(LONG_NOTES) and event["bytes_after"] == len(SHORT_NOTES)
    # A tool-less session with its own model and prompt, fed the notes.
    assert request.model == "claude-notes"
    assert request.tool_names == []
    assert "- 119: looked at module 119" in request.all_text()
    assert "You are 'alice'" not in request.system_text
    log = (hive.agent_dir("alice") / "agent.log").read_text()
    assert f"notes compacted from {len(LONG_NOTES)} to {len(SHORT_NOTES)} bytes" in log


def test_notes_the_agent_changed_during_the_rewrite_are_left_alone(
    make_hive: Callable[..., RunningHive], api: FakeAnthropic
) -> None:
    api.default = answer_compaction_with(Hang(Text(SHORT_NOTES)))
    hive, notes = start_with_long_notes(make_hive, api)
    hive.admin("send", to="alice", body="carry on")
    hive.wait_until(lambda: compaction_requests(api), what="the rewrite request")

    newer = LONG_NOTES + f"- written at {time.time()} while the rewrite ran\n"
    notes.write_text(newer)
    api.release()

    event = event_of(hive, "notes_compaction_failed")
    assert "changed while they were rewritten" in str(event["reason"])
    assert notes.read_text() == newer
    assert not (notes.parent / "notes-backups").exists()


def test_a_failed_rewrite_leaves_the_notes_as_they_were(
    make_hive: Callable[..., RunningHive], api: FakeAnthropic
) -> None:
    api.default = answer_compaction_with(server_error())
    hive, notes = start_with_long_notes(make_hive, api)
    hive.admin("send", to="alice", body="carry on")

    event = event_of(hive, "notes_compaction_failed")
    assert "500" in str(event["reason"])
    assert notes.read_text() == LONG_NOTES
    assert hive.ended_turns("alice")[0]["exit_class"] == "ok"  # the agent is not affected
    assert hive.status("alice")["failed"] is False


def test_a_clean_turn_while_a_rewrite_runs_starts_no_second_one(
    make_hive: Callable[..., RunningHive], api: FakeAnthropic
) -> None:
    """When to compact is the Agent's decision, and the rewrite it started is its state:
    a second clean turn while that rewrite runs is refused by the actor (an event says so),
    and only one rewrite ever reaches the model."""
    api.default = answer_compaction_with(Hang(Text(SHORT_NOTES)))
    hive, notes = start_with_long_notes(make_hive, api)
    hive.admin("send", to="alice", body="first")
    hive.wait_until(lambda: compaction_requests(api), what="the rewrite request")

    hive.admin("send", to="alice", body="second")
    assert [t["exit_class"] for t in hive.wait_turns("alice", 2)] == ["ok", "ok"]
    skipped = event_of(hive, "notes_compaction_skipped")
    assert "still running" in str(skipped["reason"])
    assert len(compaction_requests(api)) == 1
    api.release()

    event_of(hive, "notes_compacted")
    assert notes.read_text() == SHORT_NOTES
    assert len(compaction_requests(api)) == 1


def test_the_io_side_keeps_no_compaction_state() -> None:
    """No module-global set of notes being rewritten: the Agent actor tracks its own."""
    import inspect

    from hive import notes as notes_module
    from hive.actors.agent import AgentActor

    assert not hasattr(notes_module, "_compacting")
    assert not hasattr(notes_module, "compact_notes_after_turn")
    assert "notes_compacting" in inspect.getsource(AgentActor._notes_measured)
