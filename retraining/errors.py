"""Errors of the retraining package."""

from pipeline.core.errors import NewsflowError, RegistryError

__all__ = ["InputError", "RegistryError", "TrainingError"]


class TrainingError(NewsflowError):
    """Training cannot start or failed (bad data, bad options, bad base model)."""


class InputError(TrainingError):
    """Bad input found before any training step (a missing or damaged base model, checkpoint
    or teacher; an option the base cannot take): `newsflow train` exits with code 2."""
