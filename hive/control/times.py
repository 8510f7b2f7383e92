"""When a scheduled prompt is due: ISO 8601 with a zone, epoch seconds, or "+SECONDS".

>>> parse_at("2026-12-01T09:00:00Z", now=1790000000.0)
1796115600.0
>>> parse_at("+90", now=1000.0)
1090.0
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hive.wire import WireError, check_timestamp

MAX_AHEAD_SECONDS = 366 * 86400.0


def parse_at(value: object, now: float | None = None) -> float:
    now = time.time() if now is None else now
    if isinstance(value, bool):
        raise WireError("bad_request", "'at' must be a time, not a boolean")
    if isinstance(value, int | float):
        at = float(value)
    elif isinstance(value, str) and value.strip().startswith("+"):
        try:
            at = now + float(value.strip()[1:])
        except ValueError:
            raise WireError(
                "bad_request", f"'at' {value!r}: '+' must be followed by seconds"
            ) from None
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise WireError(
                "bad_request",
                f"'at' {value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)",
            ) from None
        if parsed.tzinfo is None:
            raise WireError(
                "bad_request",
                f"'at' {value!r} has no time zone; add one (Z, +01:00, ...) so it is not "
                "read in the wrong zone",
            )
        at = parsed.timestamp()
    else:
        raise WireError("bad_request", "'at' must be an ISO 8601 time, epoch seconds or '+N'")
    at = check_timestamp(at, "at")  # NaN, infinities, before 1970: a clear bad_request
    if at > now + MAX_AHEAD_SECONDS:
        raise WireError("bad_request", "'at' is more than a year ahead")
    return at


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
