"""Quality control of a whole slide, from the tissue tiles its prediction reads.

Each tissue tile the slide engine reads is judged by ``stain.assess_quality`` under the model
card's thresholds (``ModelCard.qc``, the ones ``predict`` judges an image by), in the reader
thread on the very array the model gets (``prefetch.TileReader.checked``), so QC reads no tile
twice. A tile can fail three of its checks (:data:`TILE_CHECKS`: blur, pen marks, exposure);
the tissue-fraction check and an unmeasured blur are left to the slide's own tissue rule, which
chose the tile (one at the tissue's edge or in fat is a good tile with little dark tissue).

A failing tile is flagged, not dropped, as ``predict`` flags a failing image: it is classified
and counts in the slide's probabilities. The slide is flagged (``passed`` False) when more than
``SlideSettings.qc_max_flagged`` of its tissue tiles fail a check (:func:`slide_quality`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_FLAGGED",
    "TILE_CHECKS",
    "SlideQC",
    "failed_checks",
    "qc_columns",
    "slide_quality",
    "tile_flags",
]

#: The checks a tissue tile can fail (``stain.qc.CHECKS`` names); bit i of a tile's flags is
#: check i.
TILE_CHECKS: tuple[str, ...] = ("blur", "pen", "exposure")

#: How a reason names each check (the words of ``stain.assess_quality``'s reasons).
_WORDS: Mapping[str, str] = {"blur": "blurry", "pen": "pen marks", "exposure": "over/under-exposed"}

DEFAULT_MAX_FLAGGED = 0.25
"""Share of tissue tiles failing QC above which a slide is flagged (``SlideSettings``)."""

#: The QC columns of a slide's record (``slides.csv``), in order.
COLUMNS: tuple[str, ...] = (
    "qc_tiles",
    "qc_flagged_share",
    *(f"qc_{check}_share" for check in TILE_CHECKS),
    "qc_passed",
    "qc_reasons",
)


def tile_flags(tile: np.ndarray, config: Any) -> int:
    """The tile's failed :data:`TILE_CHECKS` as bits, by ``stain.assess_quality`` under
    ``config`` (a ``QCConfig``)."""
    from napari_pathreview.stain.qc import assess_quality

    failed = assess_quality(tile, config).checks
    return sum(1 << i for i, check in enumerate(TILE_CHECKS) if check in failed)


def failed_checks(flags: np.ndarray) -> list[str]:
    """Each tile's failed checks as ``blur;pen`` ("" when it passed), from :func:`tile_flags`."""
    return [
        ";".join(check for i, check in enumerate(TILE_CHECKS) if int(bits) >> i & 1)
        for bits in flags
    ]


@dataclass(frozen=True)
class SlideQC:
    """A slide's QC: its tissue tiles judged, the share failing each check and any check.

    ``passed`` and ``reasons`` read as an image's ``stain.QCResult`` does, so ``predict``'s
    ``qc_passed``/``qc_reasons`` and the Analyze panel's QC line show a tiled image's verdict
    as they show an image's.
    """

    n_tiles: int
    shares: dict[str, float]
    flagged_share: float
    max_flagged: float

    @property
    def passed(self) -> bool:
        """No more than ``max_flagged`` of the tissue tiles fail a check."""
        return self.flagged_share <= self.max_flagged

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the slide is flagged (empty when it passed): the share failing, then each check's."""
        if self.passed:
            return ()
        each = ", ".join(
            f"{_WORDS[check]} {share:.0%}" for check, share in self.shares.items() if share > 0
        )
        return (
            f"{self.flagged_share:.0%} of {self.n_tiles} tissue tiles fail QC "
            f"(> {self.max_flagged:.0%}): {each}",
        )

    def columns(self) -> dict[str, Any]:
        """The slide's :data:`COLUMNS` (shares rounded to 4 decimals)."""
        return {
            "qc_tiles": self.n_tiles,
            "qc_flagged_share": round(self.flagged_share, 4),
            **{f"qc_{check}_share": round(share, 4) for check, share in self.shares.items()},
            "qc_passed": self.passed,
            "qc_reasons": ";".join(self.reasons),
        }


def slide_quality(result: Any, max_flagged: float = DEFAULT_MAX_FLAGGED) -> SlideQC | None:
    """The QC of a ``SlideResult`` from its tiles' flags; None when QC did not run.

    Args:
        result: Its ``tile_qc``: one int per classified tile, bits over :data:`TILE_CHECKS`.
        max_flagged: Share of tissue tiles failing a check above which the slide is flagged.
    """
    flags = getattr(result, "tile_qc", None)
    if flags is None or not len(flags):
        return None
    flags = np.asarray(flags, np.int64)
    shares = {check: float(((flags >> i) & 1).mean()) for i, check in enumerate(TILE_CHECKS)}
    return SlideQC(len(flags), shares, float((flags != 0).mean()), float(max_flagged))


def qc_columns(qc: SlideQC | None) -> dict[str, Any]:
    """A record's :data:`COLUMNS`: the slide's, or empty cells when QC did not run."""
    return qc.columns() if qc is not None else dict.fromkeys(COLUMNS, "")
