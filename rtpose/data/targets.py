"""Training targets and the pixel conventions every stage shares.

Convention: pixel centres sit at integer coordinates, in the frame, in scaled images and
in confidence maps alike. A map at output stride ``s`` has pixel ``i`` centred on input
coordinate ``i * s + (s - 1) / 2`` (what 2x2 pooling and half-pixel bilinear upsampling
produce), and scaling an image by ``k`` maps ``x`` to ``(x + 0.5) * k - 0.5``. Training
(these targets) and inference (rtpose.nn.pipeline) use the same formulas, so coordinates
round-trip exactly and no half-pixel bias is left for the network to absorb.
"""

from __future__ import annotations

import numpy as np


def scale_coords(xy: np.ndarray, scale: float) -> np.ndarray:
    """Frame pixels -> pixels of the image resized by ``scale``."""
    return (xy + 0.5) * scale - 0.5


def unscale_coords(uv: np.ndarray, scale: float) -> np.ndarray:
    return (uv + 0.5) / scale - 0.5


def input_to_map(xy: np.ndarray, stride: int) -> np.ndarray:
    """Input pixels -> confidence-map pixels at ``stride``."""
    return (xy - (stride - 1) / 2.0) / stride


def map_to_input(m: np.ndarray, stride: int) -> np.ndarray:
    return m * stride + (stride - 1) / 2.0


def confidence_maps(points: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Unnormalised Gaussians (peak 1) at ``points`` given in map pixels.

    ``points`` is ``(instances, nodes, 2)``; the result is ``(nodes, height, width)``
    float32, the maximum over instances (multi-peak maps), zero for NaN points.
    ``sigma`` is in map pixels.
    """
    pts = np.asarray(points, np.float32).reshape(-1, points.shape[-2], 2)
    n_nodes = pts.shape[1]
    out = np.zeros((n_nodes, height, width), np.float32)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    inv = -0.5 / (sigma * sigma)
    for inst in pts:
        visible = np.isfinite(inst).all(axis=1)
        if not visible.any():
            continue
        p = inst[visible]
        gx = np.exp(inv * (xs[None, :] - p[:, 0:1]) ** 2)  # (v, W)
        gy = np.exp(inv * (ys[None, :] - p[:, 1:2]) ** 2)  # (v, H)
        maps = gy[:, :, None] * gx[:, None, :]
        out[visible] = np.maximum(out[visible], maps)
    return out


def instance_anchor(points: np.ndarray, anchor_index: int | None) -> np.ndarray:
    """Anchor of one instance: the anchor node, or where it is missing (or
    ``anchor_index`` is None) the centre of the bounding box of its visible nodes (NaN
    if nothing is visible)."""
    if anchor_index is not None:
        a = points[anchor_index]
        if np.isfinite(a).all():
            return a.astype(np.float32)
    visible = points[np.isfinite(points).all(axis=1)]
    if len(visible) == 0:
        return np.full(2, np.nan, np.float32)
    return ((visible.min(axis=0) + visible.max(axis=0)) / 2).astype(np.float32)
