"""Alertmanager as part of the local stack (with Prometheus: NEWSFLOW_PROMETHEUS_ENABLED=true).

At start ``infra/alertmanager/alertmanager.yml`` (or NEWSFLOW_ALERTMANAGER_CONFIG) is rendered
into ``home/alertmanager/alertmanager.yml`` with the webhook of the receiver
``newsflow-webhook`` set to NEWSFLOW_ALERT_WEBHOOK_URL. A ``user:password@`` in that URL
becomes basic auth whose password sits in a file of its own; both files are readable by the
owner only. Clustering is off (no gossip port is opened).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings, mask_userinfo
from pipeline.stack import daemon

BINARY = "prometheus-alertmanager"
RECEIVER = "newsflow-webhook"


def service(settings: Settings) -> daemon.Daemon:
    return daemon.Daemon(
        name="alertmanager",
        binary=BINARY,
        root=settings.home / "alertmanager",
        port=settings.alertmanager_port,
        mark="--cluster.listen-address",
    )


def template_path(settings: Settings) -> Path:
    default = Path(__file__).resolve().parents[2] / "infra" / "alertmanager" / "alertmanager.yml"
    path = settings.alertmanager_config or default
    if not path.is_file():
        raise StackError(
            f"{path} is missing; run from a newsflow checkout or set NEWSFLOW_ALERTMANAGER_CONFIG"
        )
    return path


def _load(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML comes with the core dependencies (tokenizers' huggingface_hub)

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read the Alertmanager config {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("receivers"), list):
        raise StackError(f"{path} is not an Alertmanager config (no receivers list)")
    return doc


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (it may hold a token or password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _webhook(url: str, password_file: Path) -> dict[str, Any]:
    """The webhook config for ``url``; its password, if any, goes to ``password_file``."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise StackError(f"NEWSFLOW_ALERT_WEBHOOK_URL has no host: {mask_userinfo(url)}")
    config: dict[str, Any] = {"send_resolved": True, "max_alerts": 0}
    if parts.username is None and parts.password is None:
        config["url"] = url
        password_file.unlink(missing_ok=True)
        return config
    netloc = parts.netloc.rpartition("@")[2]
    config["url"] = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    _write_private(password_file, urllib.parse.unquote(parts.password or ""))
    config["http_config"] = {
        "basic_auth": {
            "username": urllib.parse.unquote(parts.username or ""),
            "password_file": str(password_file),
        }
    }
    return config


def render_config(settings: Settings) -> dict[str, Any]:
    """The template with the ``newsflow-webhook`` receiver pointed at the webhook URL; without
    a URL that receiver has no webhook (notifications go nowhere)."""
    doc = _load(template_path(settings))
    receivers = [r for r in doc["receivers"] if isinstance(r, dict) and r.get("name") == RECEIVER]
    if not receivers:
        raise StackError(f"{template_path(settings)} has no receiver named {RECEIVER}")
    url = settings.alert_webhook_url
    password_file = service(settings).root / "webhook-password"
    for receiver in receivers:
        receiver.pop("webhook_configs", None)
        if url:
            receiver["webhook_configs"] = [_webhook(url, password_file)]
    return doc


def write_config(settings: Settings) -> Path:
    import yaml

    d = service(settings)
    d.root.mkdir(parents=True, exist_ok=True)
    _write_private(d.config, yaml.safe_dump(render_config(settings), sort_keys=False))
    return d.config


def start(settings: Settings) -> str:
    d = service(settings)
    binary = daemon.find_binary(BINARY, install=True)
    config = write_config(settings)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={d.data}",
        d.listen_flag,
        "--cluster.listen-address=",  # a single node: no gossip port on 0.0.0.0:9094
    ]
    started = daemon.start(d, argv, timeout_s=settings.start_timeout_s)
    if not settings.alert_webhook_url:
        started += "; NEWSFLOW_ALERT_WEBHOOK_URL is unset, so notifications go nowhere"
    return started


def stop(settings: Settings) -> bool:
    return daemon.stop(service(settings))


def running_pid(settings: Settings) -> int | None:
    return daemon.running_pid(service(settings))


def answers(settings: Settings) -> bool:
    return daemon.answers(service(settings))


def purge(settings: Settings) -> None:
    daemon.purge(service(settings))
