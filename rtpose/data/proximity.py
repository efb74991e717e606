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

The anchor part and the size unit of a split are settled in one place,
:func:`distance_split`: the training report passes the run's own (``model.json``),
``rtpose eval`` its flags and what the predictions' model recorded (provenance, or the
export's ``rtpose.json``), so the same model and labels get the same bins in both.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import numpy as np

from rtpose.data.targets import instance_anchor

# (name, lower bound in animal sizes); a distance falls in the last bin whose bound it reaches
PROXIMITY_BINS: tuple[tuple[str, float], ...] = (("touching", 0.0), ("near", 1.15), ("apart", 1.6))


@attrs.frozen
class DistanceSplit:
    """How figures are split by inter-animal distance, and where each setting came from.

    Attributes:
        anchor_part: the node distances are measured from (None: the centre of each
            instance's visible-node bounding box).
        animal_size_px: the unit of the distance (None: the median :func:`animal_size`
            of the labels scored).
        anchor_from: where ``anchor_part`` came from, in words.
        size_from: where ``animal_size_px`` came from, in words.
    """

    anchor_part: str | None = None
    animal_size_px: float | None = None
    anchor_from: str = "default: box centre"
    size_from: str = "default: median sqrt(box area) of the scored labels"

    def describe(self, size_px: float) -> str:
        """One line: ``anchor part thorax (from X), animal size 89.7 px (from Y)``;
        ``size_px`` is the unit in use (the median of the labels where None here)."""
        anchor = self.anchor_part or "box centre"
        if self.anchor_from == self.size_from:
            return f"anchor part {anchor}, animal size {size_px:.1f} px (both {self.anchor_from})"
        return f"anchor part {anchor} ({self.anchor_from}), animal size {size_px:.1f} px ({self.size_from})"


def distance_split(anchor_part: str | None = None, animal_size_px: float | None = None,
                   recorded: Mapping[str, Any] | None = None, recorded_from: str = "") -> DistanceSplit:
    """The anchor part and size unit to split by: given values win, then what a model
    recorded, then the defaults (box centre; the scored labels' median size).

    Args:
        anchor_part: an explicit anchor node (``rtpose eval --anchor-part``), or None.
        animal_size_px: an explicit unit in pixels (``--animal-size``), or None.
        recorded: what the model recorded: ``anchor_part`` (a node, or None/"" for the box
            centre) and ``animal_size_px`` (the median size of its training labels), as in
            ``model.json``, ``rtpose.json`` and a predictions file's
            ``rtpose.distance_split`` provenance; a key that is absent is not recorded.
        recorded_from: where ``recorded`` was read, in words (``"model.json"``).

    Returns:
        The split, each setting with its source.
    """
    recorded = recorded or {}
    where = f"from {recorded_from}" if recorded_from else "recorded by the model"
    split = DistanceSplit()
    if anchor_part is not None:
        split = attrs.evolve(split, anchor_part=anchor_part, anchor_from="given")
    elif "anchor_part" in recorded:
        split = attrs.evolve(split, anchor_part=recorded["anchor_part"] or None, anchor_from=where)
    size = recorded.get("animal_size_px")
    if animal_size_px is not None:
        split = attrs.evolve(split, animal_size_px=float(animal_size_px), size_from="given")
    elif isinstance(size, (int, float)) and np.isfinite(size) and size > 0:
        split = attrs.evolve(split, animal_size_px=float(size), size_from=where)
    return split


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
