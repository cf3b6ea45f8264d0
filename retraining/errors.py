"""Errors of the retraining package."""

from pipeline.core.errors import NewsflowError, RegistryError

__all__ = ["RegistryError", "TrainingError"]


class TrainingError(NewsflowError):
    """Training cannot start or failed (bad data, bad options, bad base model)."""
