"""Root exceptions, so callers can catch newsflow's own failures precisely."""


class NewsflowError(Exception):
    """Base class of every error newsflow raises on purpose."""


class SettingsError(NewsflowError):
    """Settings are missing or invalid."""


class StackError(NewsflowError):
    """A local service could not be installed, started, stopped or reached."""


class DatabaseError(NewsflowError):
    """The database is unreachable or its schema is not as expected."""


class ModelError(NewsflowError):
    """A model folder is missing, malformed or fails to load."""


class RegistryError(NewsflowError):
    """The model registry (MLflow) is unreachable or a version/alias is missing."""
