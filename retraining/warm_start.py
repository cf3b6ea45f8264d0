"""``newsflow train --warm-start VERSION``: continue training a registered version.

The run starts from the fine-tuned weights its training logged (``torch/state.pt`` in MLflow)
instead of the base encoder with a fresh head, e.g. a second pass of the champion over the
same or newer rows at a lower learning rate. Everything that would not continue that very
model is a :class:`TrainingError` before any training step: a malformed or unknown version,
one trained from another base, one whose labels (names or head order) differ from the data's,
one whose run logged no weights, and a registry that cannot be read (told apart from those).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import NewsflowError
from pipeline.core.registry import TORCH_STATE_ARTIFACT
from pipeline.core.settings import Settings, mask_userinfo
from retraining.checkpoint import base_name
from retraining.errors import TrainingError

log = logging.getLogger(__name__)
_VERSION = re.compile(r"[0-9]{1,9}")


def check_version(version: str) -> str:
    """A registry version number in its canonical spelling (``01`` is version ``1``)."""
    if not _VERSION.fullmatch(version):
        raise TrainingError(
            f"--warm-start takes a registry version number (see `newsflow models list`), "
            f"not {version[:40]!r}"
        )
    return str(int(version))


def fetch_warm_start(
    settings: Settings, version: str, base: str, labels: Sequence[str]
) -> tuple[str, Path]:
    """``(version, state dict path)`` for registered ``version`` (canonical spelling; the
    weights cached beside the version's model folder), after checking it was trained from
    ``base`` with exactly ``labels`` (same names, same order)."""
    from mlflow.exceptions import MlflowException

    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata

    version = check_version(version)
    name = settings.registered_model_name
    where = mask_userinfo(settings.tracking_uri())
    _probe(settings)
    try:
        c = registry.client(settings)
        mv = c.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise TrainingError(
                f"--warm-start: cannot read version {version} from the registry at {where}: "
                f"{str(exc)[:300]}"
            ) from None
        raise TrainingError(
            f"--warm-start: version {version} does not exist in registered model {name!r} at "
            f"{where} (registered: {_known(settings)})"
        ) from None
    except Exception as exc:  # an unreachable server, an unreadable store
        raise TrainingError(
            f"--warm-start: cannot reach the registry at {where}: {type(exc).__name__}: "
            f"{str(exc)[:300]}"
        ) from None
    try:
        meta = read_metadata(registry.local_copy(settings, version))
    except NewsflowError as exc:
        raise TrainingError(f"--warm-start: version {version} is unusable: {exc}") from exc
    if meta.base_model and base_name(meta.base_model) != base_name(base):
        raise TrainingError(
            f"--warm-start: version {version} was trained from base {meta.base_model!r}, not "
            f"{base!r}: pass --base {meta.base_model}"
        )
    if list(meta.labels) != list(labels):
        raise TrainingError(
            f"--warm-start: version {version} predicts labels {meta.labels}, the training "
            f"data has {list(labels)}: its classifier head cannot continue on these rows"
        )
    try:
        logged = {a.path for a in c.list_artifacts(mv.run_id, "torch")}
    except Exception as exc:
        raise TrainingError(
            f"--warm-start: cannot list the artefacts of version {version}'s run at {where}: "
            f"{str(exc)[:300]}"
        ) from None
    if TORCH_STATE_ARTIFACT not in logged:
        raise TrainingError(
            f"--warm-start: the run behind version {version} logged no fine-tuned weights "
            f"({TORCH_STATE_ARTIFACT}); train it from the base instead"
        )
    cache = registry.local_copy_path(settings, version).with_name(f"v{version}.torch")
    try:
        path = registry.torch_state(settings, version, cache)
    except NewsflowError as exc:
        raise TrainingError(f"--warm-start: {exc}") from None
    if path is None:
        raise TrainingError(
            f"--warm-start: version {version}'s {TORCH_STATE_ARTIFACT} could not be downloaded "
            f"from {where}"
        )
    log.info("warm start from version %s (%s): %s", version, meta.version, path)
    return version, path


def _probe(settings: Settings) -> None:
    """A TCP connection to each http(s) tracking or registry server, within
    ``registry_timeout_s``: MLflow's own client retries a server that is down for minutes
    before it gives up. Only reachability is checked here; TLS, credentials and answers stay
    MLflow's (its client honours MLFLOW_TRACKING_SERVER_CERT_PATH and the like)."""
    import urllib.parse

    from pipeline.core.net import port_open

    for uri in {settings.tracking_uri(), settings.mlflow_registry_uri or ""}:
        if not uri.startswith(("http://", "https://")):
            continue
        parts = urllib.parse.urlsplit(uri)
        where = mask_userinfo(uri)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise TrainingError(
                f"--warm-start: the registry URI {where} has no usable port"
            ) from None
        if not port_open(parts.hostname or "", port, timeout=settings.registry_timeout_s):
            raise TrainingError(
                f"--warm-start: cannot reach the registry at {where}: no connection within "
                f"{settings.registry_timeout_s:g} s"
            )


def _known(settings: Settings) -> str:
    from pipeline.core import registry

    try:
        return ", ".join(v.version for v in registry.list_versions(settings)) or "none"
    except Exception:  # the listing only decorates the message
        return "unknown"
