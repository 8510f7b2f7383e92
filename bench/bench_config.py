"""hive.toml parse + validate time: the schema library hive uses against msgspec.

hive.toml is read once at start-up (and each spawned agent's config once), so this is
about start-up cost, not throughput. Compared on one file with a [hive] table and
``--agents`` agents, each with a script, an mcp server and an env table:

- toml: ``tomllib.loads`` alone (the floor both pay);
- hive: ``HiveConfig.from_toml_text`` (parse, validate, build the frozen config);
- msgspec: ``tomllib.loads`` + ``msgspec.convert`` into Structs of the same shape (types,
  defaults, unknown keys refused; not the name and env rules), if msgspec is installed.

Run: ``python -m bench.bench_config [--agents 50] [--rounds 200]``.
"""

from __future__ import annotations

import argparse
import importlib
import time
import tomllib
from collections.abc import Callable
from typing import Any

from bench.common import median
from hive.config import HiveConfig


def hive_toml(agents: int) -> str:
    head = '[hive]\nstate_dir = "state"\nrestart_intensity = 3\nmax_body_bytes = 4096\n'
    parts = [head]
    for i in range(agents):
        parts.append(
            f'[[agent]]\nname = "a{i}"\nparent = "manager"\nmodel = "claude-opus-4-1"\n'
            f'allowed_recipients = ["manager"]\nrate_limit_per_minute = 30\n'
            f'env = {{ FOO = "bar{i}" }}\n'
            '[[agent.script]]\nmatch = "ping"\ndo = [{op = "reply", body = "pong"}]\n'
            '[[agent.mcp_servers]]\nname = "echo"\ncommand = "echo-mcp"\nargs = ["--loud"]\n'
        )
    return "".join(parts)


def hive_defaults() -> dict[str, Any]:
    defaults = HiveConfig()
    dump = getattr(defaults, "model_dump", None)
    return dict(dump()) if dump else dict(vars(defaults))


def msgspec_parser() -> Callable[[str], Any] | None:
    """The same schema as msgspec Structs (built with defstruct: real types, no strings)."""
    try:
        msgspec: Any = importlib.import_module("msgspec")
    except ImportError:
        return None
    strict = {"forbid_unknown_fields": True, "frozen": True}
    strs = tuple[str, ...]
    mcp = msgspec.defstruct(
        "Mcp",
        [("name", str), ("command", str), ("args", strs, ()), ("env", dict[str, str], {}),
         ("allowed_tools", strs, ())],
        **strict,
    )  # fmt: skip
    agent = msgspec.defstruct(
        "Agent",
        [("name", str), ("runtime", str, "scripted"), ("model", str, "claude-sonnet-4-5"),
         ("parent", str, ""), ("sandbox", str, "process"), ("network", bool, True),
         ("persistent", bool, True), ("allowed_recipients", strs | None, None),
         ("allowed_tools", strs, ()), ("bash_allow", strs, ()),
         ("mcp_servers", tuple[mcp, ...], ()), ("packages", strs, ()),
         ("rate_limit_per_minute", int, 600), ("inbox_cap", int, 10_000), ("prompt", str, ""),
         ("script", tuple[dict[str, Any], ...], ()), ("on_kick", tuple[dict[str, Any], ...], ()),
         ("env", dict[str, str], {})],
        **strict,
    )  # fmt: skip
    scalars = [
        (name, type(value), value)
        for name, value in hive_defaults().items()
        if isinstance(value, bool | int | float | str)
    ]
    hive = msgspec.defstruct("Hive", [*scalars, ("state_dir", str, "hive-state")], **strict)
    file = msgspec.defstruct(
        "File",
        [("hive", hive, msgspec.field(default_factory=hive)), ("agent", tuple[agent, ...], ())],
        forbid_unknown_fields=True,
    )
    return lambda text: msgspec.convert(tomllib.loads(text), file)


def timed(parse: Callable[[str], Any], text: str, rounds: int) -> float:
    """Median milliseconds of one parse + validate."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        parse(text)
        samples.append((time.perf_counter() - start) * 1000)
    return median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    text = hive_toml(a.agents)
    print(f"hive.toml: {len(text)} bytes, {a.agents} agents, median of {a.rounds} rounds")
    print(f"  toml only       {timed(tomllib.loads, text, a.rounds):7.3f} ms")
    print(f"  hive (config)   {timed(HiveConfig.from_toml_text, text, a.rounds):7.3f} ms")
    parser = msgspec_parser()
    if parser is None:
        print("  msgspec         not installed")
    else:
        print(f"  msgspec         {timed(parser, text, a.rounds):7.3f} ms")


if __name__ == "__main__":
    main()
