"""An MLflow tracking server as part of the local stack (opt-in: NEWSFLOW_MLFLOW_SERVER=true).

Backend store: a database ``mlflow`` in the stack's PostgreSQL. Artefacts: a local folder the
server owns and serves itself (``--serve-artifacts``), so clients on any host read and write
them through ``mlflow-artifacts:`` URIs over HTTP and need no shared disk. The database
password reaches the server through ``PGPASSWORD`` in its environment, never its command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack.processes import pid_alive, port_open, read_pid, terminate, wait_until


@dataclasses.dataclass(frozen=True)
class MlflowPaths:
    root: Path
    artifacts: Path

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "server.pid"


def paths(settings: Settings) -> MlflowPaths:
    root = settings.home / "mlflow-server"
    return MlflowPaths(root=root, artifacts=settings.mlflow_artifacts_dir or root / "artifacts")


def url(settings: Settings) -> str:
    return f"http://{settings.mlflow_host}:{settings.mlflow_port}"


_SERVER_MARKS = ("mlflow", "server")
_GROUP_MARKS = ("mlflow", "uvicorn", "gunicorn", "huey")


def running_pid(settings: Settings, *, any_port: bool = False) -> int | None:
    """The server's pid when it runs (on the configured port, unless ``any_port``: ``stop``
    must find a server started before the port setting changed)."""
    p = paths(settings)
    pid = read_pid(p.pidfile)
    marks = _SERVER_MARKS if any_port else (*_SERVER_MARKS, f"{settings.mlflow_port}")
    if pid and pid_alive(pid, must_contain=marks):
        return pid
    return None


def recorded_group(settings: Settings) -> int | None:
    """The process group recorded at start (second line of the pidfile; older pidfiles hold
    only the leader's pid, which is also its group id: it starts a new session)."""
    try:
        lines = paths(settings).pidfile.read_text().split()
        return int(lines[1] if len(lines) > 1 else lines[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def group_members(pgid: int) -> dict[int, str]:
    """Live processes of process group ``pgid`` → their command lines (zombies left out)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ")"
        fields = stat.rpartition(")")[2].split()
        if len(fields) < 3 or fields[0] == "Z" or int(fields[2]) != pgid:
            continue
        cmdline = _cmdline(int(entry.name))
        if cmdline:
            out[int(entry.name)] = cmdline
    return out


def _ours(cmdline: str) -> bool:
    return any(mark in cmdline for mark in _GROUP_MARKS)


def answers(settings: Settings, timeout_s: float = 2.0) -> bool:
    try:
        health = f"{url(settings)}/health"  # http:// by construction
        with urllib.request.urlopen(health, timeout=timeout_s) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def backend_uri(settings: Settings) -> str:
    """The backend store's URI, without the password (the server gets PGPASSWORD)."""
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql+psycopg",
        username=settings.pg_user,
        host=settings.pg_host,
        port=settings.pg_port,
        database=settings.mlflow_database,
    ).render_as_string(hide_password=False)


def _ensure_database(settings: Settings) -> None:
    from pipeline.stack import postgres

    postgres.ensure_database(settings, settings.mlflow_database)


def start(settings: Settings) -> str:
    if running_pid(settings) and answers(settings):
        return f"already running at {url(settings)}"
    if importlib.util.find_spec("mlflow") is None:
        raise StackError(
            "NEWSFLOW_MLFLOW_SERVER=true needs MLflow on this host: install the `monitor` extra"
        )
    if port_open(settings.mlflow_host, settings.mlflow_port):
        raise StackError(
            f"port {settings.mlflow_port} is taken by another program; set NEWSFLOW_MLFLOW_PORT"
        )
    _ensure_database(settings)
    p = paths(settings)
    p.root.mkdir(parents=True, exist_ok=True)
    p.artifacts.mkdir(parents=True, exist_ok=True)
    allowed = [
        f"{settings.mlflow_host}:{settings.mlflow_port}",
        f"localhost:{settings.mlflow_port}",
        f"127.0.0.1:{settings.mlflow_port}",
        *[h.strip() for h in settings.mlflow_allowed_hosts.split(",") if h.strip()],
    ]
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        settings.mlflow_host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
        "--serve-artifacts",
        "--artifacts-destination",
        str(p.artifacts),
        "--allowed-hosts",
        ",".join(dict.fromkeys(allowed)),
    ]
    env = dict(
        os.environ,
        MLFLOW_BACKEND_STORE_URI=backend_uri(settings),
        PGPASSWORD=settings.pg_password.get_secret_value(),
        # MLflow 3 starts background job consumers (GenAI evaluation) that newsflow never uses.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    with open(p.log, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=p.root,
            env=env,
        )
    p.pidfile.write_text(f"{proc.pid}\n{os.getpgid(proc.pid)}\n")

    def _up() -> bool:
        if proc.poll() is not None:
            raise StackError(f"the MLflow server exited with code {proc.returncode}; read {p.log}")
        return answers(settings)

    wait_until(_up, timeout_s=settings.start_timeout_s, what="the MLflow server", log=p.log)
    return f"started at {url(settings)}"


def _signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to the group when every live member is the server's (its leader or web
    workers); otherwise only to the members that are, so a reused group id never reaches
    another program."""
    members = group_members(pgid)
    if members and all(_ours(cmd) for cmd in members.values()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        return
    for pid, cmd in members.items():
        if _ours(cmd):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def stop(settings: Settings) -> bool:
    """Stop the server and its web workers. The workers are stopped through the recorded
    process group even when the server itself is gone (killed), so none keeps the port."""
    pid = running_pid(settings, any_port=True)
    pgid = recorded_group(settings)
    leftovers = (
        {k: v for k, v in group_members(pgid).items() if _ours(v)} if pgid is not None else {}
    )
    if pid is None and not leftovers:
        paths(settings).pidfile.unlink(missing_ok=True)
        return False
    if pgid is not None:
        _signal_group(pgid, signal.SIGTERM)
    if pid is not None and not terminate(pid, timeout_s=30):
        raise StackError(f"the MLflow server (pid {pid}) did not stop")
    if pgid is not None:
        deadline = time.monotonic() + 10
        while any(_ours(c) for c in group_members(pgid).values()):
            if time.monotonic() > deadline:
                _signal_group(pgid, signal.SIGKILL)
                break
            time.sleep(0.2)
    paths(settings).pidfile.unlink(missing_ok=True)
    return True


def purge(settings: Settings) -> None:
    shutil.rmtree(paths(settings).root, ignore_errors=True)
