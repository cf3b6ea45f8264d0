"""Model folders from an MLflow tracking server, over HTTP, without MLflow installed.

A worker on any host needs only the tracking URI: it asks the registry's REST API which
version carries an alias, then downloads exactly the files listed in that version's manifest
tag (:mod:`pipeline.core.manifest`) through the server's artefact proxy
(``/api/2.0/mlflow-artifacts/artifacts/...``), each capped at its registered size and checked
against its registered SHA-256. A download lands in ``<cache>.partial`` and is renamed into
place only when every file matches, so a cut connection or a corrupt artefact never replaces
a good folder. Credentials, when the server needs them, come from the environment
(``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, the
names MLflow's own client reads).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.core import manifest
from pipeline.core.errors import ModelError, RegistryError
from pipeline.core.settings import Settings

log = logging.getLogger(__name__)
CHAMPION_POINTER = "champion.json"
_CHUNK = 1 << 20


class RegistryUnreachable(RegistryError):
    """The tracking server did not answer (down, refused, timed out, 5xx)."""


@dataclasses.dataclass(frozen=True)
class RemoteVersion:
    version: str  # registry version number
    model_version: str  # the version string in metadata.json
    source: str  # where its artefacts are (mlflow-artifacts:/...)
    run_id: str
    files: str  # the manifest tag, "" when the version was registered without one


def _headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def _base(settings: Settings) -> str:
    return settings.tracking_uri().rstrip("/")


def _shown(settings: Settings) -> str:
    """The tracking URI without any user:password part, for messages."""
    parts = urllib.parse.urlsplit(_base(settings))
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _open(settings: Settings, url: str) -> Any:
    if not url.startswith(("http://", "https://")):
        raise RegistryError(f"the registry must be an http(s):// server, not {_shown(settings)}")
    req = urllib.request.Request(url, headers=_headers())  # noqa: S310 - http(s) checked above
    try:
        return urllib.request.urlopen(req, timeout=settings.registry_timeout_s)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise RegistryUnreachable(
                f"the registry at {_shown(settings)} answered {exc.code}"
            ) from None
        raise
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnreachable(
            f"the registry at {_shown(settings)} does not answer: {reason}"
        ) from None


def _get_json(settings: Settings, path: str, params: dict[str, str]) -> dict[str, Any] | None:
    """GET a registry API call; None when the server says the thing does not exist."""
    url = f"{_base(settings)}{path}?{urllib.parse.urlencode(params)}"
    try:
        with _open(settings, url) as resp:
            body = resp.read(4 * 1024 * 1024)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        if exc.code == 404 or "RESOURCE_DOES_NOT_EXIST" in detail:
            return None
        raise RegistryError(f"the registry refused {path}: {exc.code} {detail[:300]}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise RegistryError(f"the registry at {_shown(settings)} sent no JSON for {path}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"the registry at {_shown(settings)} sent an unexpected answer")
    return data


def _version(raw: dict[str, Any]) -> RemoteVersion:
    tags = {t.get("key"): t.get("value", "") for t in raw.get("tags", []) if isinstance(t, dict)}
    return RemoteVersion(
        version=str(raw.get("version", "")),
        model_version=str(tags.get("model_version", "")),
        source=str(raw.get("source", "")),
        run_id=str(raw.get("run_id", "")),
        files=str(tags.get(manifest.TAG, "")),
    )


def by_alias(settings: Settings, alias: str) -> RemoteVersion | None:
    data = _get_json(
        settings,
        "/api/2.0/mlflow/registered-models/alias",
        {"name": settings.registered_model_name, "alias": alias},
    )
    if not data or not isinstance(data.get("model_version"), dict):
        return None
    return _version(data["model_version"])


def get_version(settings: Settings, version: str) -> RemoteVersion:
    data = _get_json(
        settings,
        "/api/2.0/mlflow/model-versions/get",
        {"name": settings.registered_model_name, "version": version},
    )
    if not data or not isinstance(data.get("model_version"), dict):
        raise RegistryError(f"{settings.registered_model_name} has no version {version}")
    return _version(data["model_version"])


def artifact_path(source: str) -> str:
    """``mlflow-artifacts:/1/run/artifacts/model`` (or with a host) → ``1/run/artifacts/model``."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme != "mlflow-artifacts":
        raise RegistryError(
            f"the version's artefacts are at {source}, not behind the tracking server's "
            "artefact proxy; a worker on another host cannot fetch them (register models "
            "against a server that runs with --serve-artifacts)"
        )
    path = parsed.path.strip("/")
    if not path or ".." in path.split("/"):
        raise RegistryError(f"unusable artefact location {source!r}")
    return path


def _download(settings: Settings, remote: str, dst: Path, want: manifest.FileDigest) -> None:
    url = f"{_base(settings)}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(remote)}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    try:
        with _open(settings, url) as resp, dst.open("wb") as out:
            while chunk := resp.read(_CHUNK):
                got += len(chunk)
                if got > want.size:
                    raise ModelError(f"{remote} is larger than the {want.size} bytes registered")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise ModelError(f"{remote}: the registry answered {exc.code}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise RegistryUnreachable(f"{remote}: download cut off: {exc}") from None


def fetch_version(settings: Settings, version: str, info: RemoteVersion | None = None) -> Path:
    """The version's folder in the local cache, downloaded when missing and checked against
    its registered file hashes either way. Raises ModelError for a version without hashes
    or whose files do not match (nothing is replaced), RegistryUnreachable when the server
    does not answer."""
    from pipeline.core.registry import local_copy_path

    dst = local_copy_path(settings, version)
    if info is None:
        info = get_version(settings, version)
    if not info.files:
        raise ModelError(
            f"version {version} was registered without file hashes ({manifest.TAG}); "
            "workers refuse it: register the folder again with this newsflow"
        )
    want = manifest.decode(info.files)
    if dst.is_dir() and not manifest.problems(dst, want):
        return dst
    base = artifact_path(info.source)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, digest in sorted(want.items()):
            _download(settings, f"{base}/{name}", tmp / name, digest)
        wrong = manifest.problems(tmp, want)
        if wrong:
            raise ModelError(
                f"version {version} refused, its files differ from those registered: "
                + "; ".join(wrong[:5])
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    log.info("downloaded version %s (%d files) from %s", version, len(want), _shown(settings))
    return dst


def remember_champion(settings: Settings, info: RemoteVersion) -> None:
    """Note which version was champion, so a restart while the registry is down can serve it."""
    from pipeline.core.registry import local_copy_path

    pointer = local_copy_path(settings, info.version).parent / CHAMPION_POINTER
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(info)))
    tmp.replace(pointer)


def remembered_champion(settings: Settings) -> RemoteVersion | None:
    from pipeline.core.registry import local_copy_path

    pointer = local_copy_path(settings, "0").parent / CHAMPION_POINTER
    try:
        data = json.loads(pointer.read_text())
        names = [f.name for f in dataclasses.fields(RemoteVersion)]
        return RemoteVersion(**{name: str(data[name]) for name in names})
    except (OSError, ValueError, KeyError, TypeError):
        return None
