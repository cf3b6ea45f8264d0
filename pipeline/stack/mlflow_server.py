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


def running_pid(settings: Settings) -> int | None:
    p = paths(settings)
    pid = read_pid(p.pidfile)
    if pid and pid_alive(pid, must_contain=("mlflow", "server", f"{settings.mlflow_port}")):
        return pid
    return None


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
    p.pidfile.write_text(f"{proc.pid}\n")

    def _up() -> bool:
        if proc.poll() is not None:
            raise StackError(f"the MLflow server exited with code {proc.returncode}; read {p.log}")
        return answers(settings)

    wait_until(_up, timeout_s=settings.start_timeout_s, what="the MLflow server", log=p.log)
    return f"started at {url(settings)}"


def stop(settings: Settings) -> bool:
    pid = running_pid(settings)
    if pid is None:
        paths(settings).pidfile.unlink(missing_ok=True)
        return False
    # The server runs its web workers as children in its own process group: stop them all.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not terminate(pid, timeout_s=30):
        raise StackError(f"the MLflow server (pid {pid}) did not stop")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    paths(settings).pidfile.unlink(missing_ok=True)
    return True


def purge(settings: Settings) -> None:
    shutil.rmtree(paths(settings).root, ignore_errors=True)
