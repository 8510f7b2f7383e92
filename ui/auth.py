"""The operator token, the login cookie and CSRF protection.

The token is generated once, at the first start, into ``<state>/operator-token`` (mode
0600): whoever can read that file is the operator. The login form trades it for an
HttpOnly, SameSite=Strict cookie; scripts send it as ``Authorization: Bearer``.

Every mutation also needs the CSRF token in an ``X-CSRF-Token`` header (or a ``csrf`` form
field). It is derived from the operator token (HMAC), so it survives daemon restarts
without server-side sessions, and another site can neither read it nor guess it.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> auth = OperatorAuth.load_or_create(d)
>>> oct((d / "operator-token").stat().st_mode & 0o777)
'0o600'
>>> auth.check_token(auth.token), auth.check_token("wrong")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_FILE = "operator-token"
COOKIE = "hive_operator"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class OperatorAuth:
    """The operator's token (kept in the state dir) and the CSRF token derived from it."""

    token: str
    path: Path

    @classmethod
    def load_or_create(cls, state_dir: Path) -> OperatorAuth:
        path = state_dir / TOKEN_FILE
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_urlsafe(32)
            # O_EXCL on a fresh name, then rename: the token is never readable by others,
            # not even for the moment between create and chmod.
            tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            os.replace(tmp, path)
        else:
            os.chmod(path, 0o600)
        return cls(token, path)

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"hive-csrf-v1", hashlib.sha256).hexdigest()

    def check_token(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.token.encode())

    def check_csrf(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.csrf.encode())


MAX_NEXT_CHARS = 2048


def safe_next_path(target: object) -> str:
    """Where to go after the login: ``target`` if it is a path on this site, else ``/``.

    A browser forgives a lot when it resolves a Location: it treats ``\\`` as ``/``, drops tabs
    and newlines anywhere and spaces and controls at either end, so ``/\\evil.example`` and
    ``/<TAB>/evil.example`` both become ``//evil.example``, another origin. Rather than
    guess at every normalisation, accept only what needs none: printable ASCII without a
    backslash, one leading ``/`` not followed by another, and nothing that parses as a
    scheme or a host.

    >>> safe_next_path("/agents/bob?tab=log#end")
    '/agents/bob?tab=log#end'
    >>> [safe_next_path(t) for t in ("/\\\\evil.example/x", "/\\t/evil.example/x", "//e.x")]
    ['/', '/', '/']
    """
    if not isinstance(target, str) or not 0 < len(target) <= MAX_NEXT_CHARS:
        return "/"
    if any(not "!" <= ch <= "~" or ch == "\\" for ch in target):
        return "/"  # controls, whitespace, non-ASCII, backslash: anything a browser rewrites
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
