"""The MLflow model registry: register model folders, manage the aliases `champion` and
`challenger`, fetch a version's folder. MLflow clients are built on demand, never at import.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from pipeline.core import manifest
from pipeline.core.errors import ModelError, RegistryError
from pipeline.core.model_cache import local_copy_path as local_copy_path
from pipeline.core.settings import Settings, mask_userinfo

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT = "model"
# The fine-tuned classifier's weights, which every training run logs beside its model folder.
TORCH_STATE_DIR, TORCH_STATE_FILE = "torch", "state.pt"
TORCH_STATE_ARTIFACT = f"{TORCH_STATE_DIR}/{TORCH_STATE_FILE}"
STATE_TAG = "newsflow.torch_state"  # their size and SHA-256, set at registration


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    version: str  # registry version number
    model_version: str  # the version string in metadata.json (what predictions carry)
    run_id: str
    aliases: list[str]
    metrics: dict[str, float]
    created_ms: int
    files: str = ""  # the manifest tag (pipeline.core.manifest), "" for older versions


def client(settings: Settings) -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if settings.mlflow_registry_uri:
        mlflow.set_registry_uri(settings.mlflow_registry_uri)
    return MlflowClient(tracking_uri=uri)


def artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps its artefacts: a folder under ``home`` for the embedded
    registry; for a tracking server None, so the server's own root applies (its
    ``mlflow-artifacts:`` proxy when it runs with ``--serve-artifacts``)."""
    if settings.tracking_is_server():
        return None
    return (settings.home / "mlflow" / "artifacts").as_uri()


def ensure_experiment(settings: Settings, name: str = "newsflow") -> str:
    c = client(settings)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        exp_id = str(c.create_experiment(name, artifact_location=artifact_location(settings)))
        exp = c.get_experiment(exp_id)
    if settings.tracking_is_server() and not _served(exp.artifact_location):
        raise RegistryError(
            f"experiment {name!r} on {mask_userinfo(settings.tracking_uri())} keeps its "
            f"artefacts at {mask_userinfo(exp.artifact_location)}, which workers cannot fetch "
            "(they read only the server's mlflow-artifacts: proxy); run the tracking server "
            "with --serve-artifacts (`NEWSFLOW_MLFLOW_SERVER=true newsflow stack up` does) "
            "and use an experiment created there"
        )
    return str(exp.experiment_id)


def _served(location: str) -> bool:
    """True for artefact locations that workers on every host can fetch: only the tracking
    server's own artefact proxy (``mlflow-artifacts:``). Workers fetch over the server's
    REST API without MLflow or cloud SDKs (:mod:`pipeline.core.model_fetch`), so an
    s3://, gs:// or plain http(s) artefact root would register versions no worker can load."""
    return location.startswith("mlflow-artifacts:")


def register_folder(
    settings: Settings,
    *,
    run_id: str,
    model_version: str,
    metrics: dict[str, float],
    folder: Path,
    torch_state: Path | None = None,
) -> str:
    """Register the run's ``model`` artefact folder (a copy of ``folder``) as a new version,
    with ``folder``'s file hashes as a tag (and those of ``torch_state``, the fine-tuned
    weights the run logged, as another); returns the version number."""
    from mlflow.exceptions import MlflowException

    c = client(settings)
    name = settings.registered_model_name
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description="newsflow topic classifier")
    run = c.get_run(run_id)
    mv = c.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}",
        run_id=run_id,
        tags={
            "model_version": model_version,
            manifest.TAG: manifest.encode(manifest.folder_manifest(folder)),
            **(
                {STATE_TAG: manifest.encode({TORCH_STATE_FILE: manifest.file_digest(torch_state)})}
                if torch_state is not None
                else {}
            ),
            **{f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()},
        },
    )
    return str(mv.version)


def _info(mv: Any) -> VersionInfo:
    tags = dict(mv.tags or {})
    return VersionInfo(
        version=str(mv.version),
        model_version=tags.get("model_version", ""),
        run_id=mv.run_id or "",
        aliases=list(getattr(mv, "aliases", []) or []),
        metrics={
            k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")
        },
        created_ms=int(mv.creation_timestamp or 0),
        files=tags.get(manifest.TAG, ""),
    )


def list_versions(settings: Settings) -> list[VersionInfo]:
    c = client(settings)
    # Settings allow only letters, digits, space, _ . - in the name: nothing to quote.
    found = c.search_model_versions(f"name='{settings.registered_model_name}'")
    out = []
    for mv in found:
        full = c.get_model_version(settings.registered_model_name, mv.version)
        out.append(_info(full))
    return sorted(out, key=lambda v: int(v.version))


def version_by_alias(settings: Settings, alias: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = client(settings).get_model_version_by_alias(settings.registered_model_name, alias)
    except MlflowException:
        return None
    return _info(mv)


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.registered_model_name, alias, version)


def local_copy(settings: Settings, version: str, *, files: str | None = None) -> Path:
    """The registered version's folder, downloaded once (see :func:`local_copy_path`) and
    checked against the file hashes recorded at registration (when the version has them).
    Over HTTP from a tracking server without MLflow installed (workers); through MLflow's
    client otherwise."""
    if settings.tracking_is_server():
        from pipeline.core import model_fetch

        return model_fetch.fetch_version(settings, version)
    dst = local_copy_path(settings, version)
    if not (dst / "metadata.json").exists():
        download(settings, version=version, dst=dst)
    if files is None:
        files = _files_tag(settings, version)
    if files:
        wrong = manifest.problems(dst, manifest.decode(files))
        if wrong:
            shutil.rmtree(dst, ignore_errors=True)
            raise ModelError(
                f"version {version}'s files differ from those registered: {'; '.join(wrong[:5])}"
            )
    return dst


def _files_tag(settings: Settings, version: str) -> str:
    mv = client(settings).get_model_version(settings.registered_model_name, version)
    return str(dict(mv.tags or {}).get(manifest.TAG, ""))


def download(settings: Settings, *, version: str, dst: Path) -> Path:
    """Copy a registered version's model folder to ``dst`` (replaced atomically)."""
    import mlflow

    client(settings)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        got = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{settings.registered_model_name}/{version}", dst_path=str(tmp)
            )
        )
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RegistryError(f"cannot download version {version}: {exc}") from exc
    shutil.rmtree(dst, ignore_errors=True)
    if got != tmp:
        got.rename(dst)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(dst)
    return dst


def torch_state(settings: Settings, version: str, dst: Path) -> Path | None:
    """The fine-tuned weights (``torch/state.pt``) logged by the run behind ``version``, or
    None when that run logged none (older runs, registered without ``STATE_TAG``). A version
    registered with its weights' digest must deliver exactly those bytes: a file that is
    missing, cannot be downloaded or differs raises :class:`RegistryError` (it must pass
    neither for the registered weights nor for "none", which would train from the base)."""
    import mlflow

    c = client(settings)
    mv = c.get_model_version(settings.registered_model_name, version)
    recorded = dict(mv.tags or {}).get(STATE_TAG)
    want = _state_digest(version, recorded) if recorded is not None else None
    dst.mkdir(parents=True, exist_ok=True)
    _clear(dst / TORCH_STATE_FILE)  # a file, link or folder left by an earlier download
    try:
        got = Path(
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=TORCH_STATE_ARTIFACT, dst_path=str(dst)
            )
        )
    except Exception as exc:
        if want is None:  # an older run that logged no weights: train from the base instead
            log.info("version %s has no torch state: %s", version, exc)
            return None
        raise RegistryError(
            f"version {version}'s fine-tuned weights ({TORCH_STATE_ARTIFACT}) were "
            f"registered but cannot be downloaded: {str(exc)[:300]}"
        ) from None
    if want is None:
        return got
    have = manifest.file_digest(got) if got.is_file() and not got.is_symlink() else None
    if have != want:
        _clear(got)
        raise RegistryError(
            f"version {version}'s fine-tuned weights ({TORCH_STATE_ARTIFACT}) differ from "
            f"the ones registered with it ({have.size if have else 'not a file of'} bytes, "
            f"registered {want.size}; SHA-256 checked)"
        )
    return got


def _state_digest(version: str, recorded: str) -> manifest.FileDigest:
    try:
        want = manifest.decode(recorded).get(TORCH_STATE_FILE)
    except ModelError:
        want = None
    if want is None:
        raise RegistryError(
            f"version {version}'s tag {STATE_TAG} is unreadable or names no "
            f"{TORCH_STATE_FILE}: its weights cannot be checked"
        )
    return want


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
