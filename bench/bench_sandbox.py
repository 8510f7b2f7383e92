"""Sandbox start overhead per turn (process vs bwrap) and the memory a sandbox costs.

    .venv/bin/python bench/bench_sandbox.py [--runs 200]

Runs a trivial command N times through each backend's wrapped ProcessSpec, interleaved so
that drift hits both alike, and prints median / p95 and the bwrap/process ratio. Then keeps
one sandboxed process idle and sums the memory of every process the sandbox adds (USS: pages
only they use), to estimate how many agents a host holds. Needs root (bwrap switches to the
agent's uid) and bubblewrap.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.common import median, percentile
from hive.config import AgentConfig
from hive.process import ProcessSpec
from hive.sandboxes import BwrapSandbox, ProcessSandbox, Sandbox
from tests.sandbox_env import SANDBOX_PYTHON, HiveLayout, make_layout

# docs/PERFORMANCE.md, "A turn of the real CLI": claude + hive-mcp while a turn runs, and a
# persistent session's resident size between turns.
CLAUDE_TURN_RSS_MIB = 295
CLAUDE_IDLE_SESSION_RSS_MIB = 284


def time_runs(spec: ProcessSpec, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(spec.argv, cwd=spec.cwd, stdin=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleaved(specs: dict[str, ProcessSpec], runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(runs // 10):
        for name, spec in specs.items():
            results[name] += time_runs(spec, 10)
    return results


def sandbox_uss_mib(spec: ProcessSpec) -> tuple[float, float]:
    """(USS of the processes the sandbox adds, USS of the idle command itself), in MiB."""
    proc = subprocess.Popen(spec.argv, cwd=spec.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"idle\n"
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        wrappers = sum(p.memory_full_info().uss for p in tree if not is_payload(p))
        payload = sum(p.memory_full_info().uss for p in tree if is_payload(p))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return wrappers / 2**20, payload / 2**20


def is_payload(p: psutil.Process) -> bool:
    return p.name().startswith("python")


def prepare_costs(bwrap: BwrapSandbox, layout: HiveLayout, files: int = 10_000) -> str:
    """prepare() runs before every turn: its cost with a work dir of ``files`` files."""
    alice = AgentConfig("alice")
    for i in range(files):
        (layout.alice.work / f"f{i}").write_bytes(b"")
    t0 = time.perf_counter()
    bwrap.prepare(alice, layout.alice)  # the first call in this process walks everything
    first = (time.perf_counter() - t0) * 1000
    later = []
    for _ in range(50):
        t0 = time.perf_counter()
        bwrap.prepare(alice, layout.alice)
        later.append((time.perf_counter() - t0) * 1000)
    return (
        f"prepare() with {files} files in work/: first call {first:.1f} ms, "
        f"later calls median {median(later):.2f} ms (p95 {percentile(later, 95):.2f} ms)"
    )


def row(name: str, values: list[float], base: float | None) -> str:
    med, p95 = median(values), percentile(values, 95)
    ratio = f"{med / base:.2f}x" if base else "1.00x"
    return f"| {name} | {med:.2f} ms | {p95:.2f} ms | {ratio} |"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=200)
    runs = p.parse_args().runs
    if os.geteuid() != 0:
        sys.exit("bench_sandbox: run as root (bwrap switches to the agent's uid)")
    layout_gen = make_layout()
    layout = next(layout_gen)
    try:
        report(layout, runs)
    finally:
        layout_gen.close()


def report(layout: HiveLayout, runs: int) -> None:
    bob_on = AgentConfig("bob", network=True)
    bob_off = AgentConfig("bob", network=False)
    process, bwrap = ProcessSandbox(), BwrapSandbox()
    for sandbox in (process, bwrap):
        sandbox.prepare(bob_on, layout.bob)

    def wrap(sandbox: Sandbox, argv: tuple[str, ...], agent: AgentConfig) -> ProcessSpec:
        return sandbox.wrap(ProcessSpec(argv), agent, layout.bob)

    true = ("/bin/true",)
    python = (SANDBOX_PYTHON, "-c", "pass")
    results = interleaved(
        {
            "true: process": wrap(process, true, bob_on),
            "true: bwrap": wrap(bwrap, true, bob_on),
            "true: bwrap, network off": wrap(bwrap, true, bob_off),
            "python -c pass: process": wrap(process, python, bob_on),
            "python -c pass: bwrap": wrap(bwrap, python, bob_on),
        },
        runs,
    )

    def base_of(name: str) -> float:
        return median(results[name.split(":")[0] + ": process"])

    print(f"## Sandbox start, {runs} runs each (median, p95, ratio to the process backend)")
    print("| command | median | p95 | vs process |")
    print("|---|---|---|---|")
    for name, values in results.items():
        base = None if name.endswith(": process") else base_of(name)
        print(row(name, values, base))

    print()
    print(prepare_costs(bwrap, layout))

    idle = (SANDBOX_PYTHON, "-c", "import sys; print('idle', flush=True); sys.stdin.read()")
    wrappers, payload = sandbox_uss_mib(wrap(bwrap, idle, bob_on))
    _, bare = sandbox_uss_mib(wrap(process, idle, bob_on))
    total_mib = psutil.virtual_memory().total / 2**20
    print()
    print("## Memory")
    print(f"bwrap's own processes (outer bwrap + pid-1 reaper), USS: {wrappers:.2f} MiB")
    print(f"idle python3 inside bwrap / outside, USS: {payload:.2f} / {bare:.2f} MiB")
    per_turn = CLAUDE_TURN_RSS_MIB + wrappers
    per_session = CLAUDE_IDLE_SESSION_RSS_MIB + wrappers
    print(
        f"host memory {total_mib:.0f} MiB: about {total_mib / per_turn:.0f} agents in a turn at "
        f"once ({per_turn:.1f} MiB each), or {total_mib / per_session:.0f} persistent sessions "
        f"({per_session:.1f} MiB each); idle per-turn agents hold no sandbox at all"
    )


if __name__ == "__main__":
    main()
