"""`stack down` stops the tracking server's web workers even when the server itself died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.core.settings import Settings
from pipeline.stack import mlflow_server

# A stand-in for `python -m mlflow server --port N`: it starts a child that calls itself
# uvicorn (as MLflow's web workers do) in its process group, then waits.
LEADER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "uvicorn"])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_stop_reaches_the_web_workers_of_a_killed_server(tmp_path: Path) -> None:
    settings = Settings().model_copy(
        update={"home": tmp_path, "mlflow_server": True, "mlflow_port": 5999}
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, "mlflow", "server", "--port", "5998"],  # an old port
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = 0
    try:
        assert leader.stdout is not None
        child = int(leader.stdout.readline())
        pidfile = mlflow_server.paths(settings).pidfile
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(f"{leader.pid}\n{os.getpgid(leader.pid)}\n")
        leader.kill()  # kill -9: the worker keeps running, orphaned
        leader.wait()
        assert _alive(child)
        assert mlflow_server.stop(settings) is True
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
        assert not pidfile.exists()
        assert mlflow_server.stop(settings) is False  # nothing left: "was not running"
    finally:
        for pid in (leader.pid, child):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_stop_leaves_other_programs_in_a_reused_group_alone(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"home": tmp_path})
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "not-ours"], start_new_session=True
    )
    try:
        pidfile = mlflow_server.paths(settings).pidfile
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(f"{other.pid}\n{other.pid}\n")
        assert mlflow_server.stop(settings) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
