"""Exceptions users see: each message says what went wrong and what to do next.

The CLI prints a ``PathReviewError`` without a traceback and exits with status 2;
widgets show it as a napari notification. Anything else is a bug and keeps its traceback.
"""


class PathReviewError(Exception):
    """Base of every error that is the user's to fix (bad input, missing model, locked DB)."""


class ImageReadError(PathReviewError):
    """A file the plugin claims could not be decoded (corrupt, truncated, empty)."""


class InvalidInputError(PathReviewError, ValueError):
    """An array or argument of the wrong shape, dtype or range."""


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
