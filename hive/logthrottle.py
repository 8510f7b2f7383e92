"""A logging filter for errors that repeat as fast as something retries.

Out of fds or disk, some loops fail over and over: hypercorn's accept loop every 0.1 s,
the Store on every commit while senders keep trying. Each failure logged with its traceback
fills the journal (maybe on the very disk that is full) and hides everything else. One line
per interval says the same: the first of a quiet spell keeps its traceback (if asked),
later ones do not, and each says how many it stands for.

>>> import logging
>>> throttle = RepeatThrottle(60.0, only={"disk full"}, clock=iter([0.0, 1.0, 2.0, 61.0]).__next__)
>>> def rec(msg: str) -> logging.LogRecord:
...     return logging.LogRecord("x", logging.ERROR, __file__, 1, msg, None, None)
>>> [throttle.filter(rec("disk full")) for _ in range(3)]
[True, False, False]
>>> throttle.filter(rec("something else"))
True
>>> last = rec("disk full"); throttle.filter(last), last.msg
(True, 'disk full [2 such lines held back before this one]')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection


class RepeatThrottle(logging.Filter):
    """Passes one record (of those whose unformatted message is in ``only``; None: all)
    per ``every`` seconds and holds back the rest, counting them."""

    def __init__(
        self,
        every: float,
        only: Collection[str] | None = None,
        first_traceback: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.every = every
        self.only = only
        self.first_traceback = first_traceback
        self.clock = clock
        self.last: float | None = None
        self.held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.only is not None and record.msg not in self.only:
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.held_back += 1
            return False
        self.last = now
        if self.held_back or not self.first_traceback:
            record.exc_info, record.exc_text = None, None
        if self.held_back:
            record.msg = f"{record.msg} [{self.held_back} such lines held back before this one]"
            self.held_back = 0
        return True


def throttle(
    logger_name: str,
    every: float,
    only: Collection[str] | None = None,
    first_traceback: bool = False,
) -> None:
    """Install a RepeatThrottle on ``logger_name`` once (a second call changes nothing)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RepeatThrottle) for f in logger.filters):
        logger.addFilter(RepeatThrottle(every, only, first_traceback))
