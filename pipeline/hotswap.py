"""Hot swap: workers follow the registry's `champion` alias and change model between batches.

A watcher thread polls the alias; when it points at a new version it downloads and loads
that version *off* the hot path, then offers it to the :class:`ModelHolder`; the agent swaps
at the start of its next batch. A failed download or load keeps the old model and logs an
error.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pipeline.core.errors import ModelError
from pipeline.core.model_fetch import RemoteVersion
from pipeline.core.model_folder import Precision
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.hotswap")
CHAMPION = "champion"

# Why a new champion was refused, the `reason` label of newsflow_model_refused_total:
# bad_files = its download or cached files fail the registered hashes/sizes (or it has none);
# bad_folder = the files are there but the folder does not load; version_mismatch = the
# registry's tag names another version than its metadata.json.
RefusalReason = Literal["bad_files", "bad_folder", "version_mismatch"]


class ModelRefused(ModelError):
    """A version that fails its checks, with the step that refused it."""

    def __init__(self, message: str, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


def refusal_reason(exc: ModelError) -> RefusalReason:
    """The label for a refused version (a ModelError from elsewhere counts as bad_folder)."""
    return exc.reason if isinstance(exc, ModelRefused) else "bad_folder"


class ModelHolder:
    def __init__(self, classifier: Classifier) -> None:
        self._current = classifier
        self._pending: Classifier | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Classifier:
        return self._current

    @property
    def pending_version(self) -> str | None:
        with self._lock:
            return None if self._pending is None else self._pending.version

    def offer(self, classifier: Classifier) -> None:
        with self._lock:
            self._pending = classifier

    def swap_if_ready(self) -> Classifier | None:
        """Called between batches; returns the new classifier when a swap happened."""
        with self._lock:
            new, self._pending = self._pending, None
        if new is None or new.version == self._current.version:
            return None
        old, old_labels = self._current.version, self._current.labels
        self._current = new
        log.info("model swapped", extra={"from_version": old, "to_version": new.version})
        if new.labels != old_labels:
            log.warning(
                "the new model's labels differ: %s -> %s (its label order is recorded per "
                "version in model_labels; reviews follow each prediction's version)",
                old_labels,
                new.labels,
            )
        return new


@dataclasses.dataclass(frozen=True)
class ChampionRef:
    version: str  # registry version number
    model_version: str  # what predictions carry
    remote: RemoteVersion | None = None  # the server's record, when the registry is a server


def champion_ref(settings: Settings) -> ChampionRef | None:
    """Which version carries the `champion` alias: over HTTP for a tracking server (no MLflow
    needed), through MLflow's client for the embedded registry."""
    if settings.tracking_is_server():
        from pipeline.core import model_fetch

        remote = model_fetch.by_alias(settings, CHAMPION)
        return None if remote is None else ChampionRef(remote.version, remote.model_version, remote)
    from pipeline.core import registry

    info = registry.version_by_alias(settings, CHAMPION)
    return None if info is None else ChampionRef(info.version, info.model_version)


def _check_version(ref: ChampionRef, clf: Classifier) -> Classifier:
    """The loaded folder must be the version the registry's tag names: otherwise the watcher
    would compare the tag with what it serves, never match, and reload every poll."""
    if ref.model_version and clf.version != ref.model_version:
        raise ModelRefused(
            f"version {ref.version} refused: registered as model version "
            f"{ref.model_version!r} but its metadata.json says {clf.version!r}",
            "version_mismatch",
        )
    return clf


def _load_ref(
    settings: Settings,
    ref: ChampionRef,
    *,
    precision: Precision,
    stop: threading.Event | None,
) -> Classifier:
    """Fetch (once) and load ``ref``; only a version that loaded and matches its tag becomes
    the remembered fallback for restarts."""
    from pipeline.core import model_fetch, registry

    try:
        if ref.remote is None:
            folder: Path = registry.local_copy(settings, ref.version)
        else:
            folder = model_fetch.fetch_version(settings, ref.version, ref.remote, stop=stop)
    except ModelError as exc:
        raise ModelRefused(str(exc), "bad_files") from exc
    try:
        loaded = Classifier.load(folder, precision=precision, threads=settings.ort_threads)
    except ModelError as exc:
        raise ModelRefused(str(exc), "bad_folder") from exc
    clf = _check_version(ref, loaded)
    if ref.remote is None:
        return clf
    model_fetch.remember_champion(settings, ref.remote)
    return clf


def load_champion(
    settings: Settings,
    *,
    precision: Precision = "auto",
    stop: threading.Event | None = None,
) -> tuple[str, Classifier]:
    """Download (once) and load the champion. Returns (registry version, classifier).

    When the tracking server does not answer, the champion this host fetched last (its
    cached, hash-checked folder) is served instead, and the watcher keeps asking. ``stop``
    cuts a running download short (FetchCancelled)."""
    from pipeline.core.errors import RegistryError
    from pipeline.core.model_fetch import RegistryUnreachable, remembered_champion

    try:
        ref = champion_ref(settings)
    except RegistryUnreachable as exc:
        last = remembered_champion(settings) if settings.tracking_is_server() else None
        if last is None:
            raise
        log.warning(
            "registry unreachable (%s); serving the cached champion, version %s", exc, last.version
        )
        ref = ChampionRef(last.version, last.model_version, last)
    if ref is None:
        raise RegistryError(
            f"no `champion` alias on {settings.registered_model_name}; train one with "
            "`newsflow train` or pass --model-dir"
        )
    return ref.version, _load_ref(settings, ref, precision=precision, stop=stop)


def load_champion_patiently(
    settings: Settings, stop: threading.Event, *, precision: Precision = "auto"
) -> tuple[str, Classifier] | None:
    """:func:`load_champion`, retried with a growing pause while there is no champion yet or
    the registry does not answer (never a crash loop). None when ``stop`` was set first
    (also while a download runs: it is cut short). A model that fails its checks is not
    retried: that needs a person."""
    from pipeline.core.errors import RegistryError

    pause = 1.0
    while not stop.is_set():
        try:
            return load_champion(settings, precision=precision, stop=stop)
        except RegistryError as exc:
            log.warning("no model to serve yet (%s); asking again in %.0f s", exc, pause)
        if stop.wait(pause):
            return None
        pause = min(pause * 2, settings.model_poll_s)
    return None


def watch_champion(
    settings: Settings,
    holder: ModelHolder,
    stop: threading.Event,
    *,
    precision: Precision = "auto",
    loader: Callable[..., tuple[str, Classifier]] = load_champion,
    on_refused: Callable[[str, str], None] | None = None,
    count_refused: Callable[[RefusalReason], None] | None = None,
) -> None:
    """Thread body: poll the alias until ``stop`` is set. A new champion whose files or graph
    fail their checks is refused: the old model keeps serving, ``on_refused(version,
    reason)`` is told, ``count_refused`` gets the :data:`RefusalReason` (the metric), and that
    version is not tried again by this process. A registry that does not answer is asked
    again at the next poll."""
    from pipeline.core.model_fetch import RegistryUnreachable

    refused: set[str] = set()
    while not stop.wait(settings.model_poll_s):
        ref: ChampionRef | None = None
        try:
            ref = champion_ref(settings)
            if ref is None or ref.model_version == holder.current.version:
                continue
            if ref.version in refused:  # refused once: a person must look (or promote anew)
                continue
            if ref.model_version == holder.pending_version:  # loaded, waiting to be swapped in
                continue
            _, clf = loader(settings, precision=precision, stop=stop)
            holder.offer(clf)
        except RegistryUnreachable as exc:
            log.warning("registry unreachable; keeping %s: %s", holder.current.version, exc)
        except Exception as exc:  # keep serving the old model
            log.error(
                "could not load the new champion; keeping %s: %s", holder.current.version, exc
            )
            version = ref.version if ref is not None else "?"
            if isinstance(exc, ModelError) and version not in refused:
                refused.add(version)
                if count_refused:
                    count_refused(refusal_reason(exc))
                if on_refused:
                    on_refused(version, str(exc))
