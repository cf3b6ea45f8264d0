"""Register a model folder built elsewhere (another host, a GPU machine, an older export) as
a new version of the registered model: one MLflow run holding the folder as its ``model``
artefact, and a version carrying the folder's file hashes."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.model_folder import check_folder
from pipeline.core.settings import Settings


def register_model_folder(settings: Settings, folder: Path) -> str:
    """Check ``folder`` (a newsflow model folder), log and register it; returns the registry
    version number. Raises ModelError for a folder that is not a model folder."""
    import mlflow

    from pipeline.core import registry

    meta = check_folder(folder)
    exp = registry.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=exp, run_name=f"register {meta.version}") as run:
        mlflow.set_tags(
            {
                "model_version": meta.version,
                "base_model": meta.base_model,
                "registered_from": "folder",
            }
        )
        if meta.metrics:
            mlflow.log_metrics({k: float(v) for k, v in meta.metrics.items()})
        mlflow.log_artifacts(str(folder), artifact_path=registry.MODEL_ARTIFACT)
        run_id: str = run.info.run_id
    return registry.register_folder(
        settings,
        run_id=run_id,
        model_version=meta.version,
        metrics={k: float(v) for k, v in meta.metrics.items()},
        folder=folder,
    )
