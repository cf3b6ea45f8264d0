"""Errors of the retraining package."""

from pipeline.core.errors import NewsflowError, RegistryError

__all__ = ["GateFailed", "RegistryError", "TrainingError"]


class TrainingError(NewsflowError):
    """Training cannot start or failed (bad data, bad options, bad base model)."""


class GateFailed(NewsflowError):
    """A challenger did not pass the promotion gate."""
