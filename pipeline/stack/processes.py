"""Small process and socket helpers shared by the service modules."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.core.errors import StackError
from pipeline.core.net import port_open as port_open  # the stack's modules import it here


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for child processes' endpoints)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int | None, *, must_contain: Sequence[str] = ()) -> bool:
    """True when ``pid`` runs and its command line holds every string of ``must_contain``
    (so a recycled pid of another program is never mistaken for ours)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if raw == b"":  # zombie
        return False
    cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return all(part in cmdline for part in must_contain)


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def terminate(pid: int, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
    """Send ``sig``; after ``timeout_s`` send SIGKILL. True when the process is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.5)
    return not pid_alive(pid)


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise StackError(f"{what} did not answer within {timeout_s:.0f}s; read {log}")


def is_root() -> bool:
    return os.geteuid() == 0


def run_as(
    user: str | None, argv: Sequence[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (as ``user`` when we are root and a user is given), capturing output."""
    if user and is_root():
        pw = pwd.getpwnam(user)
        uid, gid = pw.pw_uid, pw.pw_gid

        def demote() -> None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        kwargs.setdefault("preexec_fn", demote)
        env = dict(os.environ, HOME=pw.pw_dir, USER=user, LOGNAME=user)
        kwargs.setdefault("env", env)
        kwargs.setdefault("cwd", "/")
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(argv), capture_output=True, text=True, check=False, **kwargs
    )


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only); raise a StackError that says what to do otherwise."""
    if not shutil.which("apt-get"):
        raise StackError(f"missing {', '.join(packages)} and apt-get is not available")
    if not is_root():
        raise StackError(
            f"missing system packages; run: sudo apt-get install -y {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
