"""The project's one error type.

Everything a user can trigger (a bad file, a missing checkpoint, a path outside the
allowed root) is raised as a `DetectorError` subclass with a message that says what
to do, so callers (CLI, batch, pages) can catch one type and turn it into an error row.
"""


class DetectorError(Exception):
    """Base class: a problem the user can act on."""


class AudioError(DetectorError):
    """The file could not be decoded into usable audio."""


class WeightsError(DetectorError):
    """A checkpoint is missing, unsafe, or does not fit its architecture."""


class ConfigError(DetectorError):
    """An unknown model/set name, a bad option, or a path outside the allowed root."""
