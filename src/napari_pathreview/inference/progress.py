"""The progress item every long inference generator yields (one cancel protocol).

Its own module so that the predictor and the tiled/slide engines, which call each other,
can share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress"]


@dataclass(frozen=True)
class Progress:
    """How far a long run is: ``done`` of ``total`` items; ``cancelled`` when it was stopped."""

    done: int
    total: int
    message: str = ""
    cancelled: bool = False
