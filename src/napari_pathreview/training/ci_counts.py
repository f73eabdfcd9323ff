"""How many bootstrap resamples an interval rests on, and when that is worth saying.

Plain Python (no numpy or scipy): the Analyze panel reads it off a model card as well as
``pathreview train`` off its metrics, and importing the statistics module would pull scipy and
scikit-learn into napari's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping

# an interval resting on fewer of the drawn resamples than this share is marked as such: it
# is conditional on the resamples that held what the metric needs (``thin_intervals``)
USABLE_SHARE = 0.9


def thin_intervals(figures: Mapping) -> list[str]:
    """The metrics of a ``bootstrap_report`` whose interval rests on fewer than
    ``USABLE_SHARE`` of the drawn resamples (but some): a binary metric loses at most about
    37 % of them (a single minority patient is left out of e^-1 of the resamples), two
    minority patients about 14 %; an entry written before the counts existed has none."""
    drawn, used = figures.get("ci_n_drawn") or 0, figures.get("ci_n_resamples") or {}
    if not isinstance(used, Mapping):
        return []
    return [name for name, n in used.items() if 0 < n < USABLE_SHARE * drawn]
