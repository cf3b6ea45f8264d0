"""docker-compose.yml stays honest without a Docker engine: it parses, every service has what
it needs, every path a service reads is one some service writes, models travel only through
the MLflow server, and every NEWSFLOW_* variable it sets is a real setting. (`.ci/run` also runs
`docker compose config` wherever the compose plugin exists, and
`infra/docker/validate-compose.sh` runs a real Compose's `config` without a Docker engine.)"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from pipeline.core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
TRACKING_URI = "http://mlflow:5000"
# Services that load or register models: they must reach the registry over HTTP.
MODEL_USERS = {"worker", "worker-gpu", "scheduler", "web"}
# Third-party images: where each one writes its state, read off the image's documentation.
# Kafka's image writes to KAFKA_LOG_DIRS (its default /tmp/kraft-combined-logs is no volume).
IMAGE_STATE: dict[str, tuple[str, str]] = {  # image: (variable, its default)
    "postgres": ("PGDATA", "/var/lib/postgresql/data"),
    "apache/kafka": ("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, svc in doc["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):  # the `- KEY=value` form
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        out[name] = {**svc, "environment": {k: str(v) for k, v in env.items()}}
    return out


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(type, source, target, read_only) for each entry of ``volumes``, short or long form."""
    out = []
    for entry in svc.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            source, target = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        else:
            kind, source, target = entry["type"], entry.get("source", ""), entry["target"]
            ro = bool(entry.get("read_only"))
        out.append((kind, source, target, ro))
    return out


def _dockerfile(svc: dict[str, Any]) -> str | None:
    build = svc.get("build")
    if not build:
        return None
    path: Path = ROOT / build.get("context", ".") / build["dockerfile"]
    return path.read_text()


def _command(svc: dict[str, Any]) -> str:
    command = svc.get("command") or ""
    return command if isinstance(command, str) else " ".join(command)


def _is_app(dockerfile: str) -> bool:
    return 'ENTRYPOINT ["newsflow"]' in dockerfile


def _image_home(dockerfile: str) -> str:
    """The home folder the Dockerfile creates for the user it runs as."""
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user, "the image runs as root"
    made = re.search(
        rf"useradd\b[^\n]*--home-dir\s+(\S+)[^\n]*--create-home[^\n]*\b{re.escape(user[-1])}\b",
        dockerfile,
    )
    assert made, f"the image does not create a home folder for {user[-1]}"
    return made.group(1)


def _writes(name: str, svc: dict[str, Any]) -> list[PurePosixPath]:
    """Folders the service's own program writes to."""
    env = svc["environment"]
    dockerfile = _dockerfile(svc)
    if dockerfile is not None and _is_app(dockerfile):
        in_image = re.search(r"\bNEWSFLOW_HOME=(\S+)", dockerfile)
        home = PurePosixPath(env.get("NEWSFLOW_HOME") or (in_image and in_image.group(1)) or "~")
        reports = PurePosixPath(env.get("NEWSFLOW_REPORTS_DIR", str(home / "reports")))
        return [home, reports]
    if name == "mlflow":
        command = _command(svc)
        dest = re.search(r"--artifacts-destination\s+(\S+)", command)
        assert dest and "--serve-artifacts" in command, "MLflow must serve its artefacts"
        return [PurePosixPath(dest.group(1))]
    image = str(svc.get("image", "")).split(":")[0]
    assert image in IMAGE_STATE, f"{name}: say in IMAGE_STATE where {image} writes"
    variable, default = IMAGE_STATE[image]
    return [PurePosixPath(p) for p in env.get(variable, default).split(",") if p]


def _under(path: PurePosixPath, roots: list[PurePosixPath]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def test_compose_services_and_health_checks(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "postgres", "mlflow", "worker", "scheduler", "web"} <= set(services)
    for name in ("kafka", "postgres", "mlflow", "worker", "web", "worker-gpu"):
        assert "healthcheck" in services.get(name, {}), name
    for svc in services.values():
        build = svc.get("build")
        if build:
            assert (ROOT / build.get("context", ".") / build["dockerfile"]).is_file()


def test_compose_uses_real_setting_names() -> None:
    names = set(re.findall(r"\bNEWSFLOW_([A-Z0-9_]+)", COMPOSE.read_text()))
    names |= set(re.findall(r"^NEWSFLOW_([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    fields = {f.upper() for f in Settings.model_fields}
    assert Settings.model_config.get("env_prefix") == "NEWSFLOW_"
    assert names and names <= fields, names - fields


def test_every_mount_is_written_by_its_owner(
    doc: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """A named volume is populated by a service mounting it writable where that service's
    program writes; a read-only mount reads a volume some service populates; a bind mount
    reads a file of this repository. (The old `models` volume failed this: nothing wrote it.)
    """
    declared = set(doc.get("volumes") or {})
    populated: set[str] = set()
    readers: dict[str, list[str]] = {}
    for name, svc in services.items():
        for kind, source, target, ro in _mounts(svc):
            if kind == "bind":
                assert ro, f"{name}: bind mount {source} should be read-only"
                assert (ROOT / source).exists(), f"{name}: {source} is not in the repository"
                continue
            assert kind == "volume" and source in declared, f"{name}: undeclared {source}"
            if ro:
                readers.setdefault(source, []).append(name)
                continue
            assert _under(PurePosixPath(target), _writes(name, svc)), (
                f"{name} mounts {source} at {target}, where it writes nothing"
            )
            populated.add(source)
    for volume, who in readers.items():
        assert volume in populated, f"{who} read volume {volume}, which no service writes"
    assert declared <= populated, f"volumes nobody writes: {declared - populated}"


def test_app_services_have_a_writable_home(services: dict[str, dict[str, Any]]) -> None:
    """NEWSFLOW_HOME (where fetched models are cached) is the image user's own home."""
    app = 0
    for name, svc in services.items():
        dockerfile = _dockerfile(svc)
        if dockerfile is None or not _is_app(dockerfile):
            continue
        app += 1
        env = svc["environment"]
        assert "NEWSFLOW_HOME" in env, name
        assert env["NEWSFLOW_HOME"] == _image_home(dockerfile), name
        assert f"NEWSFLOW_HOME={env['NEWSFLOW_HOME']}" in dockerfile, name
    assert app >= len(MODEL_USERS)


def test_models_come_from_the_tracking_server(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "NEWSFLOW_MODEL_DIR" not in svc["environment"], f"{name} serves a fixed folder"
    assert set(services) >= MODEL_USERS
    for name in MODEL_USERS:
        svc = services[name]
        assert svc["environment"].get("NEWSFLOW_MLFLOW_TRACKING_URI") == TRACKING_URI, name
        assert "mlflow" in (svc.get("depends_on") or {}), name


def test_mlflow_server_is_reachable_and_its_driver_installed(
    services: dict[str, dict[str, Any]],
) -> None:
    mlflow = services["mlflow"]
    hosts = re.search(r"--allowed-hosts\s+(\S+)", _command(mlflow))
    assert hosts and "mlflow:5000" in hosts.group(1).split(","), "MLflow would refuse mlflow:5000"
    uri = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.endswith("@postgres:5432/mlflow"), uri
    driver = uri.split("://", 1)[0]
    package = {
        "postgresql": "psycopg2",
        "postgresql+psycopg2": "psycopg2",
        "postgresql+psycopg": "psycopg[",
    }[driver]
    assert package in (ROOT / "infra/docker/mlflow.Dockerfile").read_text(), driver
    init_sql = (ROOT / "infra/docker/postgres-init.sql").read_text()
    assert re.search(r"^CREATE DATABASE mlflow\b", init_sql, re.M | re.I)


def test_gpu_worker_reserves_a_gpu_and_ships_the_gpu_runtime(
    services: dict[str, dict[str, Any]],
) -> None:
    gpu = services["worker-gpu"]
    assert gpu.get("profiles") == ["gpu"], "a CPU-only host must not start it by default"
    assert gpu["command"] == ["worker", "--precision", "fp16"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["build"]["args"]["EXTRAS"] == "gpu"
    dockerfile = _dockerfile(gpu)
    assert dockerfile is not None
    assert re.search(r"nvidia/cuda:\S+-cudnn-runtime-", dockerfile)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in dockerfile
    for name, svc in services.items():
        if name != "worker-gpu":
            assert "deploy" not in svc or "devices" not in str(svc["deploy"]), name
