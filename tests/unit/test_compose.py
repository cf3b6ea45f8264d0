"""docker-compose.yml stays honest without a Docker engine: it parses, every service has what
it needs, and every NEWSFLOW_* variable it sets is a real setting. (`.ci/run` also runs
`docker compose config` wherever the compose plugin exists.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipeline.core.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_services_and_health_checks() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"kafka", "postgres", "mlflow", "worker", "scheduler", "web"} <= set(services)
    for name in ("kafka", "postgres", "mlflow", "worker", "web"):
        assert "healthcheck" in services[name], name
    for svc in services.values():
        build = svc.get("build")
        if build:
            assert (COMPOSE.parent / build["dockerfile"]).is_file()


def test_compose_uses_real_setting_names() -> None:
    names = set(re.findall(r"\bNEWSFLOW_([A-Z0-9_]+)", COMPOSE.read_text()))
    names |= set(
        re.findall(r"^NEWSFLOW_([A-Z0-9_]+)=", (COMPOSE.parent / ".env.example").read_text(), re.M)
    )
    fields = {f.upper() for f in Settings.model_fields}
    assert names and names <= fields, names - fields
