"""Console sessions: signed cookies, CSRF tokens and the sign-in failure limit.

A session is a cookie ``<payload>.<HMAC-SHA256>`` over ``{"u": user, "sid": random, "exp": unix_s}``
with a secret kept in the run folder (``console_secret``, mode 600), so every ingress replica and a
restarted app accept it without shared state. The role is not in the cookie: it is read from the users
file at each request, so a changed role or a removed user takes effect at once. The CSRF token is
``HMAC(secret, "csrf:" + sid)``: the page gets it from ``/ui/api/session`` and sends it as
``X-CSRF-Token`` on every state change; a cross-site page can neither read it nor (SameSite=Strict)
send the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

COOKIE_NAME = "nexara_session"
CSRF_HEADER = "x-csrf-token"
SECRET_FILE = "console_secret"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    sid: str
    expires_unix_s: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(run_dir: str | os.PathLike[str]) -> bytes:
    """The signing secret of this run folder, created (mode 600) by whichever replica comes first."""
    path = Path(run_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another replica may be between creating and writing it
            data = path.read_bytes()
            if len(data) == 32:
                return data
            time.sleep(0.02)
        raise RuntimeError(f"console secret {path} is not 32 bytes: delete it and restart") from None
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class SessionSigner:
    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def issue(self, user: str, now_s: float | None = None) -> tuple[str, Session]:
        now_s = time.time() if now_s is None else now_s
        session = Session(user, secrets.token_urlsafe(16), now_s + self.ttl_s)
        payload = _b64(json.dumps({"u": user, "sid": session.sid, "exp": session.expires_unix_s}).encode())
        return f"{payload}.{_b64(self._mac(payload.encode()))}", session

    def verify(self, cookie: str | None, now_s: float | None = None) -> Session | None:
        """The session of a cookie with a valid signature that has not expired, else None."""
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.partition(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(payload.encode())):
                return None
            data = json.loads(_unb64(payload))
            session = Session(str(data["u"]), str(data["sid"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_unix_s <= (time.time() if now_s is None else now_s):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac(b"csrf:" + session.sid.encode()))

    def check_csrf(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf_token(session).encode())  # type: ignore[union-attr]


class LoginThrottle:
    """Failed sign-ins per user name (``max_failures``) and per client address (``client_factor`` times
    as many: a control room behind one address is not locked out by one person's typos) over a sliding
    window; at a limit, sign-in is refused (429) before the password is checked."""

    def __init__(self, max_failures: int, window_s: float, client_factor: int = 4) -> None:
        self.window_s = window_s
        self._limits = {"name": max_failures, "client": max_failures * client_factor}
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now_s: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now_s - self.window_s:
            q.popleft()
        return q

    def retry_after_s(self, name: str, client: str, now_s: float | None = None) -> float:
        """0 when sign-in may be tried, else seconds until the oldest counted failure leaves the window."""
        now_s = time.monotonic() if now_s is None else now_s
        wait = 0.0
        for key in (("name", name.lower()), ("client", client)):
            q = self._recent(key, now_s)
            if len(q) >= self._limits[key[0]]:
                wait = max(wait, q[0] + self.window_s - now_s)
        return wait

    def failed(self, name: str, client: str, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        for key in (("name", name.lower()), ("client", client)):
            self._recent(key, now_s).append(now_s)
        if len(self._failures) > 10_000:  # bound memory under a spray of names: drop keys with no recent failure
            self._failures = {k: q for k, q in self._failures.items() if self._recent(k, now_s)}

    def succeeded(self, name: str) -> None:
        """A right password clears that name's failures (not the client's: one good account must not
        reset the count of guesses at others)."""
        self._failures.pop(("name", name.lower()), None)
