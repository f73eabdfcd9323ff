"""Where a region's holes go when the region is edited in napari (``io.shape_holes``).

The region is a 20×20 square with a 10×10 hole, as a Shapes layer carries them: the hole
follows a move, resize or rotation of the whole region, and stays put when the region is
reshaped (one vertex dragged), dropped if it then lies outside.
"""

from __future__ import annotations

import numpy as np

from napari_pathreview.io.geojson import Roi
from napari_pathreview.io.shape_holes import carry_holes, settle_holes

SQUARE = np.array([[0.0, 0.0], [0.0, 20.0], [20.0, 20.0], [20.0, 0.0]])
HOLE = np.array([[5.0, 5.0], [5.0, 15.0], [15.0, 15.0], [15.0, 5.0]])
TRIANGLE = np.array([[0.0, 0.0], [0.0, 30.0], [30.0, 0.0]])
SMALL_HOLE = np.array([[2.0, 2.0], [2.0, 6.0], [6.0, 6.0], [6.0, 2.0]])


def _holes_after(outline: np.ndarray, edited: np.ndarray, hole: np.ndarray) -> list[np.ndarray]:
    """The hole(s) of the region drawn as ``outline`` once it is edited to ``edited``."""
    kwargs = carry_holes({}, [Roi(outline, "polygon", holes=(hole,))])
    settled = settle_holes([edited], ["polygon"], kwargs["features"], kwargs["metadata"])
    return list(settled.holes[0])


def _quarter_turn(points: np.ndarray) -> np.ndarray:
    """A quarter turn about (10, 14), off the square's centre (napari's rotate handle)."""
    centre = np.array([10.0, 14.0])
    return (points - centre) @ np.array([[0.0, -1.0], [1.0, 0.0]]).T + centre


def test_a_region_rotated_as_a_whole_turns_its_hole_with_it() -> None:
    [hole] = _holes_after(SQUARE, _quarter_turn(SQUARE), HOLE)
    np.testing.assert_allclose(hole, _quarter_turn(HOLE))


def test_a_region_resized_about_a_corner_resizes_its_hole() -> None:
    [hole] = _holes_after(SQUARE, SQUARE * [1.5, 0.5], HOLE)
    np.testing.assert_allclose(hole, HOLE * [1.5, 0.5])


def test_a_region_with_one_vertex_dragged_keeps_its_hole_in_place() -> None:
    reshaped = SQUARE.copy()
    reshaped[2] = [26.0, 24.0]
    [hole] = _holes_after(SQUARE, reshaped, HOLE)
    np.testing.assert_allclose(hole, HOLE)


def test_a_triangle_with_one_vertex_dragged_does_not_warp_its_hole() -> None:
    """Any three points fit an affine map: only a move counts as a whole-triangle edit."""
    reshaped = TRIANGLE.copy()
    reshaped[1] = [0.0, 40.0]
    [hole] = _holes_after(TRIANGLE, reshaped, SMALL_HOLE)
    np.testing.assert_allclose(hole, SMALL_HOLE)


def test_a_triangle_moved_as_a_whole_moves_its_hole() -> None:
    [hole] = _holes_after(TRIANGLE, TRIANGLE + [3.0, -2.0], SMALL_HOLE)
    np.testing.assert_allclose(hole, SMALL_HOLE + [3.0, -2.0])
