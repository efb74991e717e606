"""How close the animals of a frame are: the figure that makes top-down pose hard.

Closeness is the distance from an instance's anchor to the nearest other instance's
anchor, in units of the animals' size. Size is the square root of the area of an
instance's visible-node bounding box, the scale that OKS uses (COCO keypoint
evaluation; the SLEAP paper's mAP), and the unit is its median over the labels at hand,
so the bins mean the same for flies and for mice:

- ``touching``: nearest anchor within 1.15 sizes (bodies in contact or overlapping;
  for flies13, size ~90 px, thorax to thorax under ~103 px = 3.4 mm, where the
  shipped model's errors grow),
- ``near``: 1.15 to 1.6 sizes (legs and wings can interleave, bodies apart),
- ``apart``: 1.6 sizes or more, or alone in the frame.
"""

from __future__ import annotations

import numpy as np

from rtpose.data.targets import instance_anchor

# (name, lower bound in animal sizes); a distance falls in the last bin whose bound it reaches
PROXIMITY_BINS: tuple[tuple[str, float], ...] = (("touching", 0.0), ("near", 1.15), ("apart", 1.6))


def animal_size(points: np.ndarray) -> float:
    """sqrt(area) of the bounding box of the visible nodes of ``points (nodes, 2)``; NaN
    when fewer than two nodes are visible."""
    vis = points[np.isfinite(points).all(axis=-1)]
    if len(vis) < 2:
        return float("nan")
    w, h = vis.max(axis=0) - vis.min(axis=0)
    return float(np.sqrt(w * h))


def median_size(instances: list[np.ndarray]) -> float:
    """Median :func:`animal_size` over instances ``(nodes, 2)`` (NaN if none has a size)."""
    sizes = np.array([animal_size(p) for p in instances], np.float64)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    return float(np.median(sizes)) if len(sizes) else float("nan")


def anchors(points: np.ndarray, anchor_index: int | None) -> np.ndarray:
    """``(n, 2)`` anchor of each instance of ``points (n, nodes, 2)``: the anchor node,
    or the centre of the visible nodes' bounding box where it is missing (or when
    ``anchor_index`` is None)."""
    if not len(points):
        return np.zeros((0, 2), np.float64)
    return np.stack([instance_anchor(p, anchor_index) for p in points]).astype(np.float64)


def nearest_other(points: np.ndarray, anchor_index: int | None) -> np.ndarray:
    """``(n,)`` distance (px) from each instance's anchor to the nearest other anchor of
    the same frame; ``inf`` for an instance alone (or without an anchor)."""
    return nearest_other_anchor(anchors(points, anchor_index))


def nearest_other_anchor(anchor_xy: np.ndarray) -> np.ndarray:
    """``(n,)`` distance (px) from each of the ``(n, 2)`` anchors of one frame to the
    nearest other; ``inf`` for an instance alone (or a NaN anchor)."""
    a = np.asarray(anchor_xy, np.float64)
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    d[~np.isfinite(d)] = np.inf
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1) if len(a) else np.zeros(0)


def proximity_bin(distance_px: np.ndarray, size_px: float) -> np.ndarray:
    """Bin name of each distance (``PROXIMITY_BINS``), as an object array."""
    rel = np.asarray(distance_px, np.float64) / size_px
    out = np.full(rel.shape, PROXIMITY_BINS[0][0], dtype=object)
    for name, lower in PROXIMITY_BINS[1:]:
        out[rel >= lower] = name
    return out
