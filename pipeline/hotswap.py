"""Hot swap: workers follow the registry's `champion` alias and change model between batches.

A watcher thread polls the alias; when it points at a new version it downloads and loads
that version *off* the hot path, then offers it to the :class:`ModelHolder`; the agent swaps
at the start of its next batch. A failed download or load keeps the old model and logs an
error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pipeline.core.model_folder import Precision
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.hotswap")


class ModelHolder:
    def __init__(self, classifier: Classifier) -> None:
        self._current = classifier
        self._pending: Classifier | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Classifier:
        return self._current

    def offer(self, classifier: Classifier) -> None:
        with self._lock:
            self._pending = classifier

    def swap_if_ready(self) -> Classifier | None:
        """Called between batches; returns the new classifier when a swap happened."""
        with self._lock:
            new, self._pending = self._pending, None
        if new is None or new.version == self._current.version:
            return None
        old = self._current.version
        self._current = new
        log.info("model swapped", extra={"from_version": old, "to_version": new.version})
        return new


def load_champion(settings: Settings, *, precision: Precision = "auto") -> tuple[str, Classifier]:
    """Download (once) and load the champion. Returns (registry version, classifier)."""
    from pipeline.core import registry
    from pipeline.core.errors import RegistryError

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is None:
        raise RegistryError(
            f"no `champion` alias on {settings.registered_model_name}; train one with "
            "`newsflow train` or pass --model-dir"
        )
    folder = registry.local_copy(settings, info.version)
    return info.version, Classifier.load(
        folder,
        precision=precision,
        threads=settings.ort_threads,
    )


def watch_champion(
    settings: Settings,
    holder: ModelHolder,
    stop: threading.Event,
    *,
    precision: Precision = "auto",
    loader: Callable[..., tuple[str, Classifier]] = load_champion,
) -> None:
    """Thread body: poll the alias until ``stop`` is set."""
    from pipeline.core import registry

    while not stop.wait(settings.model_poll_s):
        try:
            info = registry.version_by_alias(settings, registry.CHAMPION)
            if info is None or info.model_version == holder.current.version:
                continue
            _, clf = loader(settings, precision=precision)
            holder.offer(clf)
        except Exception as exc:  # keep serving the old model
            log.error(
                "could not load the new champion; keeping %s: %s", holder.current.version, exc
            )
