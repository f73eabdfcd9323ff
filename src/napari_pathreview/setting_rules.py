"""The range rules config dataclasses check their numeric settings by (``QCConfig``,
``SlideSettings``), raising :class:`~napari_pathreview.errors.SettingError` so a front end can
report a bad value under the name the user typed (``errors.reported_as``).

A rule is ``(valid, requirement)``: a predicate and how an error states it. Every predicate
refuses booleans and non-numbers, and NaN fails every comparison, so a NaN threshold can never
pass every image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from numbers import Integral, Real
from typing import Any

from napari_pathreview.errors import SettingError

Rule = tuple[Callable[[Any], bool], str]


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def within(low: float, high: float) -> Rule:
    """A number in the closed range [low, high]."""
    return (lambda value: _number(value) and low <= value <= high), f"within [{low:g}, {high:g}]"


def positive(requirement: str = "a positive number") -> Rule:
    """A finite number above 0."""
    return (lambda value: _number(value) and math.isfinite(value) and value > 0), requirement


FINITE_NON_NEGATIVE: Rule = (
    lambda value: _number(value) and 0 <= value < math.inf,
    "a finite number ≥ 0",
)
COUNT: Rule = (
    lambda value: isinstance(value, Integral) and not isinstance(value, bool) and value >= 1,
    "a whole number ≥ 1",
)


def check_settings(
    config: Any,
    rules: Mapping[str, Rule],
    optional: Collection[str] = (),
    error: Callable[[str, str, Any], SettingError] = SettingError,
) -> None:
    """Check each field of ``config`` named in ``rules``; a field in ``optional`` may be None.

    Raises:
        SettingError: (or ``error``) for the first field out of its range, naming it.
    """
    for name, (valid, requirement) in rules.items():
        value = getattr(config, name)
        if value is None and name in optional:
            continue
        if not valid(value):
            raise error(name, requirement, value)
