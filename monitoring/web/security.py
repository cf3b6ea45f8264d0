"""Password hashing, session tokens and the login rate limiter. Pure, no I/O.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random salt;
the stored form names its parameters so they can be raised later without breaking old
hashes.

Example:
    >>> stored = hash_password("correct horse battery")
    >>> verify_password("correct horse battery", stored), verify_password("wrong", stored)
    (True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES = 2**14, 8, 1, 32
MIN_PASSWORD = 10


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=64 * 1024 * 1024
    )


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


# A hash checked when the user does not exist, so both paths cost the same.
DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + _b64(bytes(KEY_BYTES))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database stores for a session token (a stolen table yields no cookie)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two non-empty tokens. Compared as UTF-8 bytes:
    ``hmac.compare_digest`` raises TypeError on a ``str`` with non-ASCII characters, and a
    forged form value may hold any (surrogatepass: even a lone surrogate encodes)."""
    if not a or not b:
        return False
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


class LoginLimiter:
    """At most ``attempts`` failed logins per key within ``window_s`` seconds.

    Kept in process memory: one web process per deployment is the design; behind several
    processes each keeps its own count (documented in docs/deployment.md).
    """

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(key, now)
            if len(q) < self.attempts:
                return 0.0
            return max(0.0, q[0] + self.window_s - now)

    def reserve(self, key: str, now: float | None = None) -> float:
        """Check and record in one atomic step, before the password is verified.

        Returns 0 when ``key`` may try now, and then counts the attempt as a failure at
        once (call :meth:`succeeded` or :meth:`release` when it was not one); otherwise
        returns the seconds until it may try again and records nothing. A parallel burst
        therefore gets at most ``attempts`` tries, not one per request in flight.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(key, now)
            if len(q) >= self.attempts:
                return max(q[0] + self.window_s - now, 1e-3)
            q.append(now)
            return 0.0

    def release(self, key: str) -> None:
        """Give back one attempt taken by :meth:`reserve` (it did not fail)."""
        with self._lock:
            q = self._failures.get(key)
            if q:
                q.pop()
            if q is not None and not q:
                del self._failures[key]

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
