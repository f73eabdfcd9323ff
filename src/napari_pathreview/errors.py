"""Exceptions users see: each message says what went wrong and what to do next.

The CLI prints a ``PathReviewError`` without a traceback and exits with status 2;
widgets show it as a napari notification. Anything else is a bug and keeps its traceback.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class PathReviewError(Exception):
    """Base of every error that is the user's to fix (bad input, missing model, locked DB)."""


class ImageReadError(PathReviewError):
    """A file the plugin claims could not be decoded (corrupt, truncated, empty)."""


class InvalidInputError(PathReviewError, ValueError):
    """An array or argument of the wrong shape, dtype or range."""


class SettingError(InvalidInputError):
    """A setting of a config out of range; ``field`` lets a front end report it under the name
    the user typed (a CLI flag: see :func:`reported_as`), while Python callers see ``name``."""

    def __init__(self, field: str, requirement: str, value: object, name: str = "") -> None:
        self.field, self.requirement, self.value = field, requirement, value
        super().__init__(self.naming(name or field))

    def naming(self, name: str) -> str:
        """This error's message with the setting called ``name`` (``--mpp``, say)."""
        return f"{name} must be {self.requirement}, got {self.value!r}"


@contextmanager
def reported_as(names: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a :class:`SettingError` of a field in ``names`` under that name.

    ``with reported_as({"slide_um_per_px": "--mpp"}): SlideSettings(...)`` makes a bad value
    read "--mpp must be …": the user is told what they typed, not the field behind it.
    """
    try:
        yield
    except SettingError as error:
        if error.field not in names:
            raise
        raise InvalidInputError(error.naming(names[error.field])) from None


class ModelNotFoundError(PathReviewError, LookupError):
    """No model of that name (or version) is registered."""


class WeightsError(PathReviewError):
    """Weights are missing, unsafe (pickle) or fail their checksum."""


class ReviewStoreError(PathReviewError):
    """The review database refused a write or could not be opened."""


class NonFiniteOutputError(PathReviewError):
    """A model produced NaN or infinite probabilities: broken weights or normalisation."""


class DeviceUnavailableError(InvalidInputError):
    """The requested accelerator (CUDA, MPS) is not present, or this torch build cannot use it."""
