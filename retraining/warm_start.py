"""``newsflow train --warm-start VERSION``: continue training a registered version.

The run starts from the fine-tuned weights its training logged (``torch/state.pt`` in MLflow)
instead of the base encoder with a fresh head, e.g. a second pass of the champion over the
same or newer rows at a lower learning rate. Everything that would not continue that very
model is a :class:`TrainingError` before any training step: an unknown version, one trained
from another base, one whose labels (names or head order) differ from the data's, one whose
run logged no weights.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings
from retraining.errors import TrainingError

log = logging.getLogger(__name__)
_VERSION = re.compile(r"[0-9]{1,9}")


def fetch_warm_start(
    settings: Settings, version: str, base: str, labels: Sequence[str], scratch: Path
) -> Path:
    """The state dict of registered ``version``, downloaded under ``scratch``, after checking
    it was trained from ``base`` with exactly ``labels`` (same names, same order)."""
    from mlflow.exceptions import MlflowException

    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata

    if not _VERSION.fullmatch(version):
        raise TrainingError(
            f"--warm-start takes a registry version number (see `newsflow models list`), "
            f"not {version[:40]!r}"
        )
    name = settings.registered_model_name
    try:
        registry.client(settings).get_model_version(name, version)
    except MlflowException:
        try:
            known = ", ".join(v.version for v in registry.list_versions(settings)) or "none"
        except Exception:  # the listing only decorates the message
            known = "unknown"
        raise TrainingError(
            f"--warm-start: version {version} does not exist in registered model {name!r} "
            f"(registered: {known})"
        ) from None
    try:
        meta = read_metadata(registry.local_copy(settings, version))
    except NewsflowError as exc:
        raise TrainingError(f"--warm-start: version {version} is unusable: {exc}") from exc
    if meta.base_model and meta.base_model != base:
        raise TrainingError(
            f"--warm-start: version {version} was trained from base {meta.base_model!r}, not "
            f"{base!r}: pass --base {meta.base_model}"
        )
    if list(meta.labels) != list(labels):
        raise TrainingError(
            f"--warm-start: version {version} predicts labels {meta.labels}, the training "
            f"data has {list(labels)}: its classifier head cannot continue on these rows"
        )
    path = registry.torch_state(settings, version, scratch / f"warm-start-v{version}")
    if path is None:
        raise TrainingError(
            f"--warm-start: the run behind version {version} logged no fine-tuned weights "
            "(torch/state.pt); train it from the base instead"
        )
    log.info("warm start from version %s (%s): %s", version, meta.version, path)
    return path
