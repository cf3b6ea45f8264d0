"""A single-process service from a Debian package (Prometheus, Alertmanager): found on PATH,
started on 127.0.0.1 with a pidfile and a log under the stack's home, ready when its
``/-/ready`` answers 200, reloaded with SIGHUP, stopped by its recorded pid."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import StackError
from pipeline.stack.processes import (
    apt_install,
    pid_alive,
    port_open,
    read_pid,
    terminate,
    wait_until,
)

HOST = "127.0.0.1"
# Debian 12's packages: `prometheus` (with promtool), `prometheus-alertmanager` (with amtool).
PACKAGES = ("prometheus", "prometheus-alertmanager")
INSTALL_HINT = (
    "install Debian's packages: sudo apt-get install -y prometheus prometheus-alertmanager"
)


@dataclasses.dataclass(frozen=True)
class Daemon:
    """Where one service lives. ``mark`` is a flag only its command line holds, so a recycled
    pid of another program is never taken for it."""

    name: str
    binary: str
    root: Path
    port: int
    mark: str

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}.yml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def listen_flag(self) -> str:
        return f"--web.listen-address={HOST}:{self.port}"


def find_binary(binary: str, *, install: bool) -> str:
    """The binary's path; installs the Debian packages first when allowed (root only).
    Missing: a StackError that says which packages to install."""
    found = shutil.which(binary)
    if found is None and install:
        try:
            apt_install(*PACKAGES)
        except StackError as exc:
            raise StackError(f"{binary} is not installed: {exc}") from None
        _disable_system_services()
        found = shutil.which(binary)
    if found is None:
        raise StackError(f"{binary} is not installed; {INSTALL_HINT}")
    return found


def _disable_system_services() -> None:
    """The packages just installed enable system services; the stack runs its own copies, and
    the system Alertmanager's port 9093 is Kafka's controller port."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return
    subprocess.run(
        [systemctl, "disable", "--now", *PACKAGES], capture_output=True, check=False, timeout=60
    )


def running_pid(d: Daemon, *, any_port: bool = False) -> int | None:
    pid = read_pid(d.pidfile)
    marks = (d.binary, d.mark) if any_port else (d.binary, d.mark, d.listen_flag)
    return pid if pid and pid_alive(pid, must_contain=marks) else None


def answers(d: Daemon, timeout_s: float = 2.0) -> bool:
    try:
        # http:// by construction
        with urllib.request.urlopen(f"{d.url}/-/ready", timeout=timeout_s) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(d: Daemon, argv: Sequence[str], *, timeout_s: float) -> str:
    """Start ``argv`` (the config must be written already) unless it runs; when it runs,
    SIGHUP makes it re-read the config just rendered."""
    pid = running_pid(d)
    if pid is not None:  # ours, perhaps still starting
        wait_until(lambda: answers(d), timeout_s=timeout_s, what=d.name, log=d.log)
        os.kill(pid, signal.SIGHUP)
        return f"already running at {d.url} (pid {pid}); configuration reloaded"
    if port_open(HOST, d.port):
        raise StackError(
            f"port {d.port} is taken by another program; set NEWSFLOW_{d.name.upper()}_PORT"
        )
    d.data.mkdir(parents=True, exist_ok=True)
    with open(d.log, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=d.root,
        )
    d.pidfile.write_text(f"{proc.pid}\n")

    def _up() -> bool:
        if proc.poll() is not None:
            raise StackError(f"{d.name} exited with code {proc.returncode}; read {d.log}")
        return answers(d)

    wait_until(_up, timeout_s=timeout_s, what=d.name, log=d.log)
    return f"started at {d.url} (pid {proc.pid})"


def stop(d: Daemon) -> bool:
    """Stop the recorded process (whatever port it listens on). False when none ran."""
    pid = running_pid(d, any_port=True)
    if pid is None:
        d.pidfile.unlink(missing_ok=True)
        return False
    if not terminate(pid, timeout_s=30):
        raise StackError(f"{d.name} (pid {pid}) did not stop")
    d.pidfile.unlink(missing_ok=True)
    return True


def purge(d: Daemon) -> None:
    shutil.rmtree(d.root, ignore_errors=True)
