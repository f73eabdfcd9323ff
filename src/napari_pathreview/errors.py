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


class LayerExportError(PathReviewError):
    """A napari layer that cannot be written in the chosen format.

    Deliberately not a ValueError: napari's writer lookup takes a ValueError for "no writer
    found" and shows that instead of the message.
    """


class ArgumentError(InvalidInputError):
    """An error whose advice names arguments of a Python call (``fields``).

    Python callers read them as spelled in the call; a front end re-raises the error under the
    names its user typed (CLI flags: see :func:`reported_as`). The rule that raises it is
    written once; only the spelling of its advice differs. Subclasses write :meth:`naming`.
    """

    fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(self.naming({}))

    def naming(self, names: Mapping[str, str]) -> str:
        """This error's message with the arguments in ``names`` spelled that way."""
        raise NotImplementedError


class SettingError(ArgumentError):
    """A setting of a config out of range; ``field`` lets a front end report it under the name
    the user typed (a CLI flag: see :func:`reported_as`), while Python callers see ``name``."""

    def __init__(self, field: str, requirement: str, value: object, name: str = "") -> None:
        self.field, self.requirement, self.value, self.name = field, requirement, value, name
        self.fields = (field,)
        super().__init__()

    def naming(self, names: Mapping[str, str]) -> str:
        """This error's message with the setting called ``names[field]`` (``--mpp``, say)."""
        name = names.get(self.field) or self.name or self.field
        return f"{name} must be {self.requirement}, got {self.value!r}"


class DestinationExistsError(ArgumentError):
    """A file would be replaced by an output; refused unless the caller asks to overwrite."""

    fields = ("overwrite",)

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__()

    def naming(self, names: Mapping[str, str]) -> str:
        flag = names.get("overwrite", "overwrite=True")
        return (
            f"{self.path} already exists; choose another destination or pass {flag} to replace it"
        )


@contextmanager
def reported_as(names: Mapping[str, str]) -> Iterator[None]:
    """Re-raise an :class:`ArgumentError` naming a field in ``names`` under that name.

    ``with reported_as({"slide_um_per_px": "--mpp"}): SlideSettings(...)`` makes a bad value
    read "--mpp must be …": the user is told what they typed, not the field behind it.
    """
    try:
        yield
    except ArgumentError as error:
        if not set(error.fields) & set(names):
            raise
        raise InvalidInputError(error.naming(names)) from None


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
