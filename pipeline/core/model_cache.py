"""Where registered model versions are cached on this host: ``home/models/<name>-<key>/v<N>``.

Both ways of filling the cache use these paths: the registry client
(:mod:`pipeline.core.registry`, through MLflow) and the HTTP fetcher
(:mod:`pipeline.core.model_fetch`, without MLflow). Neither imports the other for them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pipeline.core.errors import RegistryError
from pipeline.core.settings import Settings

VERSION_PATTERN = re.compile(r"^[0-9]{1,9}$")


def check_version(version: str) -> str:
    """``version`` when it is a registry version number (digits only), else RegistryError:
    it becomes part of a cache path, so nothing else may pass."""
    if not VERSION_PATTERN.fullmatch(version):
        raise RegistryError(f"the registry sent an invalid version number {version[:40]!r}")
    return version


def models_folder(settings: Settings) -> Path:
    """``home/models/<registered model name>-<key>``: version numbers restart for every
    registered model and every registry, so the cache is keyed by a hash of both (the exact
    name: two names that read alike, ``news flow`` and ``news_flow``, never share a folder)."""
    exact = f"{settings.registered_model_name}\0{settings.tracking_uri()}"
    key = hashlib.sha256(exact.encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.registered_model_name)[:64]
    return settings.home / "models" / f"{name}-{key}"


def local_copy_path(settings: Settings, version: str) -> Path:
    """``models_folder/v<N>``; ``version`` must be a registry version number (digits), so a
    version string from a server can never point outside the cache."""
    root = (settings.home / "models").resolve()
    path = models_folder(settings) / f"v{check_version(version)}"
    if not path.resolve().is_relative_to(root):
        raise RegistryError(f"the cache folder for version {version} would lie outside {root}")
    return path
