"""Label images → ROI polygons, so a painted Labels layer can be saved for QuPath.

Each label value becomes one polygon per connected component (8-connected, as napari's fill
and OpenCV's contours join diagonal pixels), with its holes. Outlines run along the pixel
EDGES, not through the centres of the edge pixels: a 10×10 square at pixels 0..9 becomes the
GeoJSON (QuPath) square (0, 0)–(10, 10), the region QuPath measures is the pixels painted, and
rasterising the file by pixel centres (napari, ``explain.masks``) gives back exactly those
pixels. Rings are traced on the lattice of pixel corners (``io.pixel_origin``'s CORNER rule)
and converted to napari's centre-origin ``Roi`` coordinates once, here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.geojson import Roi
from napari_pathreview.io.pixel_origin import CORNER, corner_to_centre

Vertex = tuple[int, int]
"""A pixel corner (row, col): pixel (i, j) spans [i, i + 1) × [j, j + 1)."""
Heading = tuple[int, int]

# The edge each side of a foreground pixel contributes when its neighbour there is background:
# (neighbour offset, start corner offset, heading), walking with the pixel on the RIGHT.
_SIDES: tuple[tuple[Heading, Vertex, Heading], ...] = (
    ((-1, 0), (0, 0), (0, 1)),  # top: east
    ((0, 1), (0, 1), (1, 0)),  # right: south
    ((1, 0), (1, 1), (0, -1)),  # bottom: west
    ((0, -1), (1, 0), (-1, 0)),  # left: north
)


def label_image_to_rois(labels: Any, class_names: dict[int, str] | None = None) -> list[Roi]:
    """Trace every non-zero label of a 2-D label image along its pixel edges.

    Args:
        labels: H×W integer array (0 = background).
        class_names: Optional label value → QuPath classification name.

    Returns:
        One polygon ROI per connected component (two components touching only at a corner
        are two polygons), with its holes; properties ``label`` (and ``classification``
        when named); vertices in napari (row, col) order, centre-origin.

    Raises:
        InvalidInputError: The array is not 2-D integers.
    """
    array = np.asarray(labels)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InvalidInputError(
            f"expected a 2-D integer label image, got {array.shape} {array.dtype}"
        )
    rois: list[Roi] = []
    for value in np.unique(array):
        if value == 0:
            continue
        props: dict[str, Any] = {"label": int(value)}
        if class_names and int(value) in class_names:
            props["classification"] = class_names[int(value)]
        for exterior, holes in edge_polygons(array == value):
            rois.append(Roi(_napari(exterior), "polygon", dict(props), tuple(map(_napari, holes))))
    return rois


def edge_polygons(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The polygons (exterior, holes) whose union is ``mask``, as rings of pixel corners.

    Every ring is simple (a ring that touched itself at a corner is split there), exteriors
    run clockwise on screen and holes anticlockwise, and only the corners where the outline
    turns are kept.
    """
    from skimage.measure import points_in_poly

    rings = [simple for ring in _trace(np.asarray(mask, dtype=bool)) for simple in _split(ring)]
    exteriors = [r for r in rings if _area(r) < 0]
    areas = [-_area(r) for r in exteriors]
    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = [(r, []) for r in exteriors]
    for hole in (r for r in rings if _area(r) > 0):
        inside = _inside_point(hole)
        holders = [i for i, r in enumerate(exteriors) if points_in_poly([inside], r)[0]]
        polygons[min(holders, key=areas.__getitem__)][1].append(hole)
    return polygons


def _outgoing(mask: np.ndarray) -> dict[Vertex, set[Heading]]:
    """Each boundary edge, by its start corner: foreground pixel on the right, background on
    the left (outside the image counts as background)."""
    padded = np.pad(mask, 1)
    rows, cols = mask.shape
    edges: dict[Vertex, set[Heading]] = {}
    for (dr, dc), (sr, sc), heading in _SIDES:
        neighbour = padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        for r, c in zip(*np.nonzero(mask & ~neighbour), strict=True):
            edges.setdefault((int(r) + sr, int(c) + sc), set()).add(heading)
    return edges


def _left(heading: Heading) -> Heading:
    return (-heading[1], heading[0])


def _right(heading: Heading) -> Heading:
    return (heading[1], -heading[0])


def _trace(mask: np.ndarray) -> list[list[Vertex]]:
    """Closed rings of boundary edges. Where two background and two foreground pixels meet
    diagonally the walk turns left, keeping the diagonal foreground pixels in one ring."""
    edges = _outgoing(mask)
    rings = []
    while edges:
        start = next(iter(edges))
        first = _take(edges, start, next(iter(edges[start])))
        ring, vertex, heading = [start], _step(start, first), first
        while True:
            options = edges.get(vertex, set()) | ({first} if vertex == start else set())
            turn = next(t for t in (_left(heading), heading, _right(heading)) if t in options)
            if vertex == start and turn == first:
                break
            if turn != heading:
                ring.append(vertex)
            heading = _take(edges, vertex, turn)
            vertex = _step(vertex, heading)
        rings.append(ring if first != heading else ring[1:])  # a start mid-side is no corner
    return rings


def _take(edges: dict[Vertex, set[Heading]], vertex: Vertex, heading: Heading) -> Heading:
    edges[vertex].discard(heading)
    if not edges[vertex]:
        del edges[vertex]
    return heading


def _step(vertex: Vertex, heading: Heading) -> Vertex:
    return (vertex[0] + heading[0], vertex[1] + heading[1])


def _split(ring: list[Vertex]) -> list[np.ndarray]:
    """``ring`` as simple rings: a loop that returns to a corner already passed is cut off."""
    rings, stack, seen = [], [], {}
    for vertex in ring:
        if vertex in seen:
            at = seen[vertex]
            rings.append(np.array(stack[at:], dtype=float))
            for passed in stack[at + 1 :]:
                del seen[passed]
            del stack[at + 1 :]
        else:
            seen[vertex] = len(stack)
            stack.append(vertex)
    return [*rings, np.array(stack, dtype=float)]


def _area(ring: np.ndarray) -> float:
    """Signed (shoelace) area in (row, col): negative for exteriors, positive for holes."""
    rows, cols = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(rows * np.roll(cols, -1) - np.roll(rows, -1) * cols))


def _inside_point(hole: np.ndarray) -> np.ndarray:
    """The centre of the background pixel left of the hole's first edge (inside the hole)."""
    heading = np.sign(hole[1] - hole[0])
    return hole[0] + 0.5 * heading + 0.5 * np.array(_left((int(heading[0]), int(heading[1]))))


def _napari(ring: np.ndarray) -> np.ndarray:
    return corner_to_centre(ring, CORNER)
