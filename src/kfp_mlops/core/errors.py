"""Errors a user can act on.

Every failure caused by input (a bad data source, an unknown estimator, a bad cron, unreachable
storage...) is raised as a :class:`MlopsError` whose message names what was wrong and where. The
CLI prints it as one line and exits non-zero; inside a KFP task it fails the task with the same
message.
"""


class MlopsError(Exception):
    """A failure the user can fix; the message says what and where."""


class DataError(MlopsError):
    """Input data is missing, unreadable or unfit for training."""


class StorageError(MlopsError):
    """A storage location is unreachable, missing, or refuses a write."""


class AlreadyExistsError(StorageError):
    """A write that must not overwrite found the object already there."""


class ConfigError(MlopsError):
    """A parameter or setting has a value that cannot work."""
