"""Model folders from an MLflow tracking server, over HTTP, without MLflow installed.

A worker on any host needs only the tracking URI: it asks the registry's REST API which
version carries an alias, then downloads exactly the files listed in that version's manifest
tag (:mod:`pipeline.core.manifest`) through the server's artefact proxy
(``/api/2.0/mlflow-artifacts/artifacts/...``), each capped at its registered size and checked
against its registered SHA-256. A download lands in a fresh temporary folder beside the
cache, under a per-version file lock (processes sharing one home never write into each
other's download), and is renamed into place only when every file matches, so a cut
connection or a corrupt artefact never replaces a good folder. Redirects are refused: the
credentials would follow them to another host. Credentials, when the server needs them, come
from the environment (``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, the names MLflow's own client reads).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import http.client
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core import manifest
from pipeline.core.errors import ModelError, RegistryError
from pipeline.core.model_cache import VERSION_PATTERN, check_version, local_copy_path, models_folder
from pipeline.core.settings import Settings, mask_userinfo

log = logging.getLogger(__name__)
CHAMPION_POINTER = "champion.json"
_CHUNK = 1 << 20
# A file must arrive within max(_MIN_DEADLINE_S, size / _MIN_RATE_BPS) seconds: a server
# that trickles bytes (each read within the socket timeout) cannot hold a fetch forever.
_MIN_DEADLINE_S = 60.0
_MIN_RATE_BPS = 256 * 1024
_LOCK_POLL_S = 0.2


class RegistryUnreachable(RegistryError):
    """The tracking server did not answer (down, refused, timed out, 5xx, cut off)."""


class FetchCancelled(RegistryUnreachable):
    """The caller's stop event was set while a download ran or waited."""


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
    return mask_userinfo(_base(settings))


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the Authorization header would go along to wherever it
    points (another host, or plain http). The 3xx then surfaces as an HTTPError."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)
_RETRY_CODES = frozenset({408, 425, 429})


def _open(settings: Settings, url: str) -> Any:
    if not url.startswith(("http://", "https://")):
        raise RegistryError(f"the registry must be an http(s):// server, not {_shown(settings)}")
    try:
        if "@" in urllib.parse.urlsplit(url).netloc:
            raise RegistryError(
                f"the tracking URI {_shown(settings)} holds a user name or password; set "
                "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN "
                "in the environment instead"
            )
        req = urllib.request.Request(url, headers=_headers())  # noqa: S310 - http(s) checked
        return _OPENER.open(req, timeout=settings.registry_timeout_s)
    except urllib.error.HTTPError as exc:
        where = f"the registry at {_shown(settings)}"
        if 300 <= exc.code < 400:
            target = mask_userinfo(str(exc.headers.get("Location", "?")))[:300]
            exc.close()
            raise RegistryError(
                f"{where} redirected to {target} ({exc.code}); workers follow no redirects "
                "(the credentials would go along): set the tracking URI to the final address"
            ) from None
        if exc.code in (401, 403):
            exc.close()
            raise RegistryError(
                f"{where} refused access ({exc.code}): check MLFLOW_TRACKING_TOKEN or "
                "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in the environment"
            ) from None
        if exc.code >= 500 or exc.code in _RETRY_CODES:
            exc.close()
            raise RegistryUnreachable(f"{where} answered {exc.code}") from None
        raise
    except http.client.InvalidURL:
        raise RegistryError(f"the tracking URI {_shown(settings)} is not a usable URL") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise RegistryUnreachable(
            f"the registry at {_shown(settings)} does not answer: {reason}"
        ) from None
    except ValueError:
        raise RegistryError(f"the tracking URI {_shown(settings)} is not a usable URL") from None


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
    except (OSError, http.client.HTTPException) as exc:
        raise RegistryUnreachable(
            f"the registry at {_shown(settings)} broke off its answer to {path}: "
            f"{type(exc).__name__}"
        ) from None
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
        version=check_version(str(raw.get("version", ""))),
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
        {"name": settings.registered_model_name, "version": check_version(version)},
    )
    if not data or not isinstance(data.get("model_version"), dict):
        raise RegistryError(f"{settings.registered_model_name} has no version {version}")
    return _version(data["model_version"])


def artifact_path(source: str) -> str:
    """``mlflow-artifacts:/1/run/artifacts/model`` (or with a host) → ``1/run/artifacts/model``.

    Any other source (``models:/`` from MLflow's copy-version, s3://, a local path) is a
    ModelError: the version itself is unusable here, so a watcher refuses it once instead
    of asking again every poll."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme != "mlflow-artifacts":
        raise ModelError(
            f"the version's artefacts are at {mask_userinfo(source)[:300]}, not behind the "
            "tracking server's artefact proxy; a worker on another host cannot fetch them "
            "(register model folders with `newsflow models register` against a server that "
            "runs with --serve-artifacts)"
        )
    path = parsed.path.strip("/")
    if not path or ".." in path.split("/"):
        raise ModelError(f"unusable artefact location {source[:300]!r}")
    return path


def _deadline_s(size: int) -> float:
    return max(_MIN_DEADLINE_S, size / _MIN_RATE_BPS)


def _download(
    settings: Settings,
    remote: str,
    dst: Path,
    want: manifest.FileDigest,
    stop: threading.Event | None = None,
) -> None:
    url = f"{_base(settings)}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(remote)}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    deadline = time.monotonic() + _deadline_s(want.size)
    try:
        with _open(settings, url) as resp, dst.open("wb") as out:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > want.size:
                raise ModelError(
                    f"{remote} is larger than the {want.size} bytes registered ({length})"
                )
            if length is not None and length.isdigit() and int(length) < want.size:
                raise ModelError(f"{remote} is {length} bytes, registered {want.size}")
            while True:
                try:  # read1: whatever has arrived, so stop and the deadline are checked
                    chunk = resp.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise RegistryUnreachable(
                        f"{remote}: download cut off after {got} of {want.size} bytes: "
                        f"{type(exc).__name__}"
                    ) from None
                if not chunk:
                    break
                got += len(chunk)
                if got > want.size:
                    raise ModelError(f"{remote} is larger than the {want.size} bytes registered")
                out.write(chunk)
                if stop is not None and stop.is_set():
                    raise FetchCancelled(f"{remote}: download stopped")
                if time.monotonic() > deadline:
                    raise RegistryUnreachable(
                        f"{remote}: too slow, {got} of {want.size} bytes after "
                        f"{_deadline_s(want.size):.0f} s"
                    )
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ModelError(f"{remote}: the registry answered {exc.code}") from None
    if got < want.size:  # the connection closed early: the server may do better next time
        raise RegistryUnreachable(f"{remote}: download cut off after {got} of {want.size} bytes")


def _remove(path: Path) -> None:
    """Remove a folder or a file (or a link) at ``path``, whichever is there."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _valid(dst: Path, want: dict[str, manifest.FileDigest]) -> bool:
    return dst.is_dir() and not dst.is_symlink() and not manifest.problems(dst, want)


@contextlib.contextmanager
def _version_lock(lockfile: Path, stop: threading.Event | None) -> Iterator[None]:
    """An exclusive lock per cached version, shared by every process using this home; the
    wait can be cut short by ``stop``."""
    with lockfile.open("a") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop.wait(_LOCK_POLL_S):
                    raise FetchCancelled(f"stopped while waiting for {lockfile.name}") from None
                if stop is None:
                    time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def fetch_version(
    settings: Settings,
    version: str,
    info: RemoteVersion | None = None,
    *,
    stop: threading.Event | None = None,
) -> Path:
    """The version's folder in the local cache, downloaded when missing and checked against
    its registered file hashes either way. Raises ModelError for a version without hashes
    or whose files do not match (nothing is replaced), RegistryUnreachable when the server
    does not answer or the download is cut off (FetchCancelled when ``stop`` was set)."""
    dst = local_copy_path(settings, version)
    if info is None:
        info = get_version(settings, version)
    if not info.files:
        raise ModelError(
            f"version {version} was registered without file hashes ({manifest.TAG}); "
            "workers refuse it: register the folder again with this newsflow"
        )
    want = manifest.decode(info.files)
    try:
        if _valid(dst, want):
            return dst
        base = artifact_path(info.source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{dst.name}.tmp-"
        with _version_lock(dst.parent / f".{dst.name}.lock", stop):
            if _valid(dst, want):  # another process fetched it while this one waited
                return dst
            for stale in dst.parent.glob(f"{prefix}*"):  # left by a killed fetch
                _remove(stale)
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dst.parent))
            try:
                for name, digest in sorted(want.items()):
                    _download(settings, f"{base}/{name}", tmp / name, digest, stop)
                wrong = manifest.problems(tmp, want)
                if wrong:
                    raise ModelError(
                        f"version {version} refused, its files differ from those registered: "
                        + "; ".join(wrong[:5])
                    )
                _remove(dst)
                tmp.rename(dst)
            finally:
                _remove(tmp)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RegistryError(f"no space to store version {version}: {exc}") from None
        raise ModelError(f"version {version} cannot be stored in the cache: {exc}") from None
    log.info("downloaded version %s (%d files) from %s", version, len(want), _shown(settings))
    return dst


def remember_champion(settings: Settings, info: RemoteVersion) -> None:
    """Note which version was champion (after it loaded), so a restart while the registry is
    down can serve it."""
    pointer = local_copy_path(settings, info.version).parent / CHAMPION_POINTER
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    record = {"name": settings.registered_model_name, **dataclasses.asdict(info)}
    tmp.write_text(json.dumps(record))
    tmp.replace(pointer)


def remembered_champion(settings: Settings) -> RemoteVersion | None:
    pointer = models_folder(settings) / CHAMPION_POINTER
    try:
        data = json.loads(pointer.read_text())
        if data.get("name") != settings.registered_model_name:
            return None  # written for another registered model (or by an older newsflow)
        names = [f.name for f in dataclasses.fields(RemoteVersion)]
        out = RemoteVersion(**{name: str(data[name]) for name in names})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not VERSION_PATTERN.fullmatch(out.version):
        return None
    return out
