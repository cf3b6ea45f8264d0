"""PostgreSQL from Debian's packages, as a private cluster owned by the stack."""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import shutil
import signal
from pathlib import Path

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack.processes import (
    apt_install,
    is_root,
    pid_alive,
    port_open,
    read_pid,
    run_as,
    terminate,
    wait_until,
)

OS_USER_WHEN_ROOT = "postgres"  # initdb and postgres refuse to run as root


@dataclasses.dataclass(frozen=True)
class PostgresPaths:
    data: Path
    log: Path

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"


def paths(settings: Settings) -> PostgresPaths:
    if settings.pg_dir is not None:
        base = settings.pg_dir
    elif is_root():
        # initdb refuses root, so the cluster belongs to `postgres`, who cannot enter /root.
        base = Path("/var/lib/newsflow/postgres")
    else:
        base = settings.home / "postgres"
    return PostgresPaths(data=base / "data", log=base / "postgres.log")


def bin_dir(*, install: bool) -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and install:
        apt_install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise StackError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _os_user() -> str | None:
    return OS_USER_WHEN_ROOT if is_root() else None


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def running_pid(settings: Settings) -> int | None:
    p = paths(settings)
    pid = read_pid(p.pidfile)
    if pid and pid_alive(pid, must_contain=("postgres", str(p.data))):
        return pid
    return None


def answers(settings: Settings) -> bool:
    return port_open(settings.pg_host, settings.pg_port)


def _psql_argv(settings: Settings, *, database: str = "postgres") -> list[str]:
    """psql's command line. It carries no SQL: statements (which may hold a password) go on
    stdin, so they never show in ``ps`` or /proc/*/cmdline."""
    return [
        str(bin_dir(install=False) / "psql"),
        "-h",
        str(paths(settings).data),
        "-p",
        str(settings.pg_port),
        "-U",
        "postgres",
        "-d",
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-X",  # no ~/.psqlrc
        "-tA",
        "-f",
        "-",
    ]


def _psql(
    settings: Settings, sql: str, *, database: str = "postgres", secret: str | None = None
) -> str:
    """Run SQL given on stdin; ``secret`` (a value quoted inside ``sql``) is masked in errors."""
    proc = run_as(_os_user(), _psql_argv(settings, database=database), input=sql)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if secret:
            for form in (secret.replace("'", "''"), secret):
                err = err.replace(form, "***")
        raise StackError(f"psql failed: {err}")
    return proc.stdout.strip()


def start(settings: Settings) -> str:
    """Install (if needed), initialise (once) and start the cluster; create role and database.
    Returns a short description of what was done."""
    p = paths(settings)
    if running_pid(settings) and answers(settings):
        _ensure_role_and_db(settings)
        return "already running"
    bindir = bin_dir(install=True)
    user = _os_user()
    did = []
    if not (p.data / "PG_VERSION").exists():
        p.data.mkdir(parents=True, exist_ok=True)
        if user:
            _chown_tree(p.data.parent, user)
        os.chmod(p.data, 0o700)
        proc = run_as(
            user,
            [
                str(bindir / "initdb"),
                "-D",
                str(p.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-instructions",
            ],
        )
        if proc.returncode != 0:
            raise StackError(f"initdb failed:\n{proc.stderr[-2000:]}")
        did.append("initialised")
    if port_open(settings.pg_host, settings.pg_port):
        raise StackError(
            f"port {settings.pg_port} is taken by another program; set NEWSFLOW_PG_PORT"
        )
    opts = (
        f"-c listen_addresses={settings.pg_host} -c port={settings.pg_port} "
        f"-c unix_socket_directories={p.data} -c max_connections=200 "
        "-c fsync=on -c shared_buffers=128MB -c track_commit_timestamp=on"
    )
    proc = run_as(
        user,
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(p.data),
            "-l",
            str(p.log),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(settings.start_timeout_s)),
            "start",
        ],
    )
    if proc.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start: {proc.stdout[-500:]}{proc.stderr[-500:]}; read {p.log}"
        )
    wait_until(
        lambda: answers(settings), timeout_s=settings.start_timeout_s, what="PostgreSQL", log=p.log
    )
    _ensure_role_and_db(settings)
    did.append("started")
    return ", ".join(did)


def _ensure_role_and_db(settings: Settings) -> None:
    role = settings.pg_user
    secret = settings.pg_password.get_secret_value()
    password = secret.replace("'", "''")
    exists = _psql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
    verb = "ALTER" if exists == "1" else "CREATE"
    _psql(
        settings,
        f"{verb} ROLE \"{role}\" LOGIN CREATEDB PASSWORD '{password}'",
        secret=secret,
    )
    if (
        _psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{settings.pg_database}'")
        != "1"
    ):
        _psql(settings, f'CREATE DATABASE "{settings.pg_database}" OWNER "{role}"')


def ensure_database(settings: Settings, name: str) -> None:
    """Create database ``name`` owned by the stack's role when it does not exist."""
    if not name.replace("_", "").isalnum():
        raise StackError(f"database name {name!r}: letters, digits and _ only")
    if _psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        _psql(settings, f'CREATE DATABASE "{name}" OWNER "{settings.pg_user}"')


def stop(settings: Settings) -> bool:
    """Fast shutdown of the stack's own postmaster, by pid. True when something was stopped."""
    pid = running_pid(settings)
    if pid is None:
        return False
    if not terminate(pid, sig=signal.SIGINT, timeout_s=60):
        raise StackError(f"PostgreSQL (pid {pid}) did not stop")
    return True


def purge(settings: Settings) -> None:
    shutil.rmtree(paths(settings).data.parent, ignore_errors=True)
