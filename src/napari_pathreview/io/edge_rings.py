"""A mask's outline as rings on the lattice of pixel corners, traced with array operations.

A slide-sized Labels layer has millions of boundary edges; walking them one by one in Python
took tens of seconds per save. Here only the corners where an outline turns are found (from
2×2 neighbourhoods, in strips), each is linked to the next corner along its outgoing edge, and
the rings are the cycles of that link, ordered by pointer jumping; Python loops remain only
over the places where a ring touches itself at a corner.

Conventions (those of the edge walk this replaced, so files written before read the same):
edges run with the foreground on the RIGHT, so exteriors run clockwise on screen and holes
anticlockwise; where two foreground pixels meet diagonally the outline turns left, joining
them (8-connected foreground); a ring starts at its top-left corner that has an eastward edge
(east first where a diagonal pair offers east and west) and is split where it returns to a
corner it passed, into the loop just closed and the rest.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

E, S, W, N = 0, 1, 2, 3
"""Headings, clockwise on screen: (0, 1), (1, 0), (0, -1), (-1, 0) in (row, col)."""

# The 2×2 pixels around a corner as bits: 1 up-left, 2 up-right, 4 down-left, 8 down-right.
_SADDLE_EW, _SADDLE_NS = 9, 6  # diagonal pairs: out east and west / out south and north
_OUT = np.full(16, -1, dtype=np.int8)  # the one outgoing heading at a turning corner
for _code in range(16):
    _up_left, _up_right, _down_left, _down_right = (bool(_code & bit) for bit in (1, 2, 4, 8))
    _outs = [
        heading
        for heading, edge in (
            (E, _down_right and not _up_right),  # the top of the pixel down-right
            (S, _down_left and not _down_right),  # the right of the pixel down-left
            (W, _up_left and not _down_left),  # the bottom of the pixel up-left
            (N, _up_right and not _up_left),  # the left of the pixel up-right
        )
        if edge
    ]
    if len(_outs) == 1:
        _OUT[_code] = _outs[0]
_STRIP = 1 << 22  # corner lattice points examined per numpy pass (bounds the temporaries)


def edge_polygons(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The polygons (exterior, holes) whose union is ``mask``, as float (row, col) rings of
    pixel corners.

    Every ring is simple (a ring that touched itself at a corner is split there), exteriors
    run clockwise on screen and holes anticlockwise, only the corners where the outline turns
    are kept, and each hole goes to the innermost exterior around it.
    """
    rows, cols, codes = _corners(np.asarray(mask, dtype=bool))
    if rows.size == 0:
        return []
    links = _Links(rows, cols, codes)
    flat, starts, leaving = _rings(links)
    ring_rows = rows[links.vertex[flat]].astype(float)
    ring_cols = cols[links.vertex[flat]].astype(float)
    exterior = _signed_areas(ring_rows, ring_cols, starts) < 0
    holder = _holders(links, (rows, cols), (flat, starts, leaving), exterior)
    rings = np.split(np.column_stack([ring_rows, ring_cols]), starts[1:])
    index = {ring: i for i, ring in enumerate(np.flatnonzero(exterior))}
    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = [(rings[r], []) for r in index]
    for hole in np.flatnonzero(~exterior):
        polygons[index[int(holder[hole])]][1].append(rings[hole])
    return polygons


def _corners(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and 2×2 code of every lattice point where an outline turns, row-major.

    Outside the image counts as background; the lattice has (H + 1) × (W + 1) points.
    """
    height, width = mask.shape
    step = max(1, _STRIP // (width + 2))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for top in range(0, height + 1, step):
        bottom = min(top + step, height + 1)  # lattice rows [top, bottom)
        block = np.zeros((bottom - top + 1, width + 2), dtype=bool)  # pixel rows top-1..
        first, last = max(top - 1, 0), min(bottom, height)
        block[first - (top - 1) : last - (top - 1), 1:-1] = mask[first:last]
        up_left, up_right = block[:-1, :-1], block[:-1, 1:]
        down_left, down_right = block[1:, :-1], block[1:, 1:]
        top_differs, bottom_differs = up_left ^ up_right, down_left ^ down_right
        saddle = top_differs & bottom_differs & (up_left ^ down_left)
        r, c = np.nonzero((top_differs ^ bottom_differs) | saddle)
        code = (
            up_left[r, c].astype(np.uint8)
            | up_right[r, c] << 1
            | down_left[r, c] << 2
            | down_right[r, c] << 3
        )
        found.append((r + top, c, code))
    rows, cols, codes = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return rows, cols, codes


class _Links:
    """The outgoing edges at the corners (one, or two where a diagonal pair meets: "slots")
    and, for each, the slot the outline continues with at the next corner it reaches."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray) -> None:
        saddle_ew, saddle_ns = codes == _SADDLE_EW, codes == _SADDLE_NS
        saddle = saddle_ew | saddle_ns
        count = 1 + saddle.astype(np.intp)
        self.first = np.concatenate([[0], np.cumsum(count)[:-1]])
        self.pairs = self.first[saddle]  # the first of each diagonal pair's two slots
        v = self.vertex = np.repeat(np.arange(rows.size), count)
        second = np.zeros(v.size, dtype=bool)
        second[self.pairs + 1] = True
        self.heading = heading = np.select(
            [saddle_ew[v], saddle_ns[v]],
            [np.where(second, W, E), np.where(second, N, S)],
            _OUT[codes][v].astype(np.intp),
        )
        by_column = np.lexsort((rows, cols))
        column_rank = np.empty_like(by_column)
        column_rank[by_column] = np.arange(by_column.size)
        rank = column_rank[v]
        target = np.select(
            [heading == E, heading == W, heading == S],
            [v + 1, v - 1, by_column[np.minimum(rank + 1, rows.size - 1)]],
            by_column[np.maximum(rank - 1, 0)],
        )
        # At a diagonal pair the outline turns left: the second slot (W, N) after N or E.
        self.next = self.first[target] + (saddle[target] & ((heading == N) | (heading == E)))
        # Where a ring starts: its top-left corner with an eastward edge, east before west.
        self.key = np.where((heading == E) | saddle_ew[v], 2 * v + second, np.iinfo(np.intp).max)


def _rings(links: _Links) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The simple rings, as slots in walking order.

    Returns:
        ``flat`` (every ring's slots, one ring after another), ``starts`` (where each ring
        begins in ``flat``) and ``leaving`` (the slot whose edge leaves each entry of ``flat``
        within its ring: the entry itself, except at a corner a split ring passed twice).
    """
    cycle = _cycle_minimum(links.key, links.next)
    steps_left = _steps_to_end(links.next, links.key == cycle)
    order = np.lexsort((-steps_left, cycle))
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    sorted_cycle = cycle[order]
    cycle_starts = np.flatnonzero(np.r_[True, sorted_cycle[1:] != sorted_cycle[:-1]])
    flat, leaving = np.arange(order.size), np.arange(order.size)
    starts = [cycle_starts]
    twice = links.pairs[cycle[links.pairs] == cycle[links.pairs + 1]]
    first, again = np.sort([position[twice], position[twice + 1]], axis=0)
    which = np.searchsorted(cycle_starts, first, side="right") - 1
    bounds = np.r_[cycle_starts, order.size]
    for ring in np.unique(which):
        begin, end = int(bounds[ring]), int(bounds[ring + 1])
        chosen = which == ring
        pieces = _split(
            begin, end, sorted(zip(again[chosen].tolist(), first[chosen].tolist(), strict=True))
        )
        flat[begin:end] = np.concatenate([p for p, _ in pieces])
        leaving[begin:end] = np.concatenate([q for _, q in pieces])
        starts.append(begin + np.cumsum([len(p) for p, _ in pieces[:-1]], dtype=np.intp))
    return order[flat], np.unique(np.concatenate(starts)), order[leaving]


def _cycle_minimum(key: np.ndarray, successor: np.ndarray) -> np.ndarray:
    """Each slot's smallest key around its cycle (pointer jumping: windows of 1, 2, 4, ...).

    Once doubling the window changes nothing, every window already spans its whole cycle.
    """
    window, jump = key, successor
    while True:
        wider = np.minimum(window, window[jump])
        if np.array_equal(wider, window):
            return window
        window, jump = wider, jump[jump]


def _steps_to_end(successor: np.ndarray, start: np.ndarray) -> np.ndarray:
    """How many links each slot is from the last slot of its cycle (the one before the start)."""
    last = start[successor]
    steps = (~last).astype(np.intp)
    jump = np.where(last, np.arange(successor.size), successor)
    while not last[jump].all():
        steps = steps + steps[jump]
        jump = jump[jump]
    return steps


def _split(
    begin: int, end: int, repeats: list[tuple[int, int]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A ring's positions [begin, end) cut into simple rings: walking on, a corner met again
    (``(again, first)`` pairs, by ``again``) closes the loop since its first visit, if that
    visit is still on the open path. Each piece: positions, and the position whose edge
    leaves each (a corner closed keeps going on with the edge of its second visit)."""
    path: list[tuple[int, int, int]] = []  # runs (lo, hi, leaving lo) of the open path
    pieces = []
    walked = begin
    for again, first in repeats:
        if walked < again:
            path.append((walked, again, walked))
        k = bisect_right([lo for lo, _, _ in path], first) - 1
        if k < 0 or first >= path[k][1]:  # cut off already: walk on through it
            walked = again
            continue
        lo, hi, leave = path[k]
        pieces.append(_piece([(first, hi, leave + first - lo), *path[k + 1 :]]))
        del path[k:]
        path += [(lo, first, leave)] if first > lo else []
        path.append((first, first + 1, again))
        walked = again + 1
    if walked < end:
        path.append((walked, end, walked))
    return [*pieces, _piece(path)]


def _piece(runs: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([np.arange(lo, hi) for lo, hi, _ in runs]),
        np.concatenate([np.arange(leave, leave + hi - lo) for lo, hi, leave in runs]),
    )


def _signed_areas(rows: np.ndarray, cols: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Shoelace area of each ring in (row, col): negative for exteriors, positive for holes."""
    following = np.arange(1, rows.size + 1)
    following[np.r_[starts[1:], rows.size] - 1] = starts
    return 0.5 * np.add.reduceat(rows * cols[following] - rows[following] * cols, starts)


def _holders(
    links: _Links,
    corners: tuple[np.ndarray, np.ndarray],
    rings: tuple[np.ndarray, np.ndarray, np.ndarray],
    exterior: np.ndarray,
) -> np.ndarray:
    """For each ring, the innermost exterior around it (meaningful for holes).

    Rings touch at most at corners, so they nest. A ring's parent is found from the pixel just
    west of its top-left corner: the first edge left of that pixel on its row is the parent's,
    if the pixel is on that ring's inside, or else a sibling's, whose parent it shares.
    """
    flat, starts, leaving = rings
    if exterior.sum() == 1 or exterior.all():
        return np.full(starts.size, np.flatnonzero(exterior)[0])
    rows, cols = corners
    owner = np.empty_like(flat)
    owner[leaving] = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, flat.size]))
    upright = np.flatnonzero((links.heading == S) | (links.heading == N))
    edge_row, edge_col, edge_slot = _unit_edges(upright, rows, cols, links)
    stride = int(cols.max()) + 2
    edge_key = edge_row * stride + edge_col
    top_left = np.minimum.reduceat(links.vertex[flat], starts)
    probe_row = rows[top_left]
    at = np.searchsorted(edge_key, probe_row * stride + cols[top_left] - 1, side="right") - 1
    found = (at >= 0) & (edge_row[np.maximum(at, 0)] == probe_row)
    slot = edge_slot[np.maximum(at, 0)]
    ring = owner[slot]
    around = found & (exterior[ring] == (links.heading[slot] == N))
    parent = np.where(around, ring, -1)
    waiting, same_as = found & ~around, ring.copy()
    while waiting.any():
        ring_ids = np.flatnonzero(waiting)
        ahead = same_as[ring_ids]
        settled = ~waiting[ahead]
        parent[ring_ids[settled]] = parent[ahead[settled]]
        same_as[ring_ids[~settled]] = same_as[ahead[~settled]]
        waiting[ring_ids[settled]] = False
    holder = parent.copy()
    holes = np.flatnonzero(~exterior)
    while not exterior[holder[holes]].all():
        holder[holes] = np.where(exterior[holder[holes]], holder[holes], parent[holder[holes]])
    return holder


def _unit_edges(
    slots: np.ndarray, rows: np.ndarray, cols: np.ndarray, links: _Links
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit edges of the vertical runs leaving ``slots``: pixel row, lattice column and
    slot of each, sorted by (row, column)."""
    here, there = rows[links.vertex[slots]], rows[links.vertex[links.next[slots]]]
    low, length = np.minimum(here, there), np.abs(there - here)
    slot = np.repeat(slots, length)
    offset = np.arange(slot.size) - np.repeat(np.cumsum(length) - length, length)
    row, col = np.repeat(low, length) + offset, cols[links.vertex[slot]]
    order = np.lexsort((col, row))
    return row[order], col[order], slot[order]
