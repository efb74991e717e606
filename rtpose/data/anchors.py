"""Where an instance's anchor is when its anchor node is not labelled.

The centroid network learns to put a peak on each animal's anchor, and the
centered-instance network learns on crops centred there, so both need the anchor of
every labelled instance. SLEAP falls back to the centre of the visible nodes' bounding
box where the anchor node is not visible. For a partly hidden animal that centre lies
wherever the visible half is: in the mice2 labels the anchor node (Trunk) is missing in
29% of the instances, and the bounding-box centre is then a median 58 px from where the
Trunk is (a third of the 192 px crop). The two networks were taught two places for one
mouse in one pose, and which one the centroid network learned changed from run to run.

:func:`estimate_anchors` puts the missing anchor where the labelled animals put it:
every instance whose anchor node is visible, and which shares the most visible nodes
with the instance at hand, is moved onto those shared nodes by the rigid motion
(rotation and translation, no reflection, no scaling) that fits them best in the
least-squares sense (Kabsch, Acta Cryst. A32, 1976); the anchors of the ``k`` best
fitting references, so moved, give the estimate (their coordinate-wise median).
"""

from __future__ import annotations

import attrs
import numpy as np

from rtpose.data.labels import FrameLabels
from rtpose.data.proximity import anchors
from rtpose.data.targets import instance_anchor

# references used per estimate: the best fitting K, from at most MAX_REFERENCES instances
K_NEAREST = 5
MAX_REFERENCES = 2000


def _rigid_fit(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares rotations and translations moving each ``src[r] (m, 2)``
    onto ``dst (m, 2)`` with weights ``w[r] (m,)`` (0 where a node is not shared).

    Returns:
        ``rot (R, 2, 2)``, ``src_mean (R, 2)``, ``dst_mean (R, 2)``: a point ``p`` of
        reference ``r`` maps to ``rot[r] @ (p - src_mean[r]) + dst_mean[r]``.
    """
    ws = w.sum(axis=1, keepdims=True)
    src_mean = (w[..., None] * src).sum(axis=1) / ws
    dst_mean = (w[..., None] * dst[None]).sum(axis=1) / ws
    a = (src - src_mean[:, None]) * w[..., None]
    b = dst[None] - dst_mean[:, None]
    h = np.einsum("rmi,rmj->rij", a, b)  # cross-covariance
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("rji,rkj->rik", vt, u)))  # -1: would reflect
    fix = np.zeros((len(d), 2, 2))
    fix[:, 0, 0], fix[:, 1, 1] = 1.0, np.where(d == 0, 1.0, d)
    rot = np.einsum("rji,rjk,rlk->ril", vt, fix, u)  # V diag(1, d) U^T
    return rot, src_mean, dst_mean


def estimate_anchors(points: np.ndarray, anchor_index: int, k: int = K_NEAREST) -> np.ndarray:
    """The anchor of every instance of ``points (n, nodes, 2)`` (NaN where invisible):
    the anchor node where it is visible, else the estimate described in the module
    docstring from the instances where it is visible; the bounding-box centre of the
    visible nodes (:func:`rtpose.data.targets.instance_anchor`) where fewer than two
    nodes are visible or no reference shares two of them.

    Returns:
        ``(n, 2)`` float32 anchors in the points' pixels; NaN for an instance without
        any visible node.
    """
    pts = np.asarray(points, np.float64)
    vis = np.isfinite(pts).all(axis=-1)
    out = anchors(pts, anchor_index)
    refs = np.flatnonzero(vis[:, anchor_index])
    if len(refs) > MAX_REFERENCES:  # evenly spaced, so the estimate is deterministic
        refs = refs[np.linspace(0, len(refs) - 1, MAX_REFERENCES).astype(int)]
    ref_pts = np.nan_to_num(pts[refs])
    for i in np.flatnonzero(~vis[:, anchor_index]):
        shown = np.flatnonzero(vis[i])
        if len(shown) < 2 or not len(refs):
            continue
        w = vis[refs][:, shown].astype(np.float64)  # (R, m): the nodes each reference shares
        shared = w.sum(axis=1)
        best = shared.max()
        if best < 2:
            continue
        use = shared == best
        src, wu = ref_pts[use][:, shown], w[use]
        rot, s_mean, d_mean = _rigid_fit(src, pts[i, shown], wu)
        moved = np.einsum("rij,rmj->rmi", rot, src - s_mean[:, None]) + d_mean[:, None]
        resid = ((moved - pts[i, shown][None]) ** 2).sum(-1)
        rms = np.sqrt((resid * wu).sum(axis=1) / best)
        order = np.argsort(rms, kind="stable")[:k]
        a = np.einsum("rij,rj->ri", rot[order], ref_pts[use][order, anchor_index] - s_mean[order]) + d_mean[order]
        out[i] = np.median(a, axis=0)
    return out.astype(np.float32)


def attach_anchors(frames: list[FrameLabels], anchor_index: int | None,
                   frame_hw: tuple[int, int] | None = None) -> list[FrameLabels]:
    """``frames`` with each instance's anchor (:func:`estimate_anchors`, pooled over all
    of ``frames``) stored for ``anchor_index``; unchanged when ``anchor_index`` is None
    (the bounding-box centre is the anchor by definition).

    ``frame_hw``: an estimate outside a frame of this size (an animal leaving the view)
    is replaced by the bounding-box centre, which is inside: the centroid network can
    only put peaks in the frame.
    """
    if anchor_index is None or not frames:
        return list(frames)
    points = np.concatenate([f.points for f in frames])
    estimated = estimate_anchors(points, anchor_index)
    if frame_hw is not None:
        h, w = frame_hw
        x, y = estimated[:, 0], estimated[:, 1]
        outside = (x < 0) | (y < 0) | (x > w - 1) | (y > h - 1)
        for i in np.flatnonzero(outside):
            estimated[i] = instance_anchor(points[i], anchor_index)
    out, start = [], 0
    for f in frames:
        n = len(f.points)
        out.append(attrs.evolve(f, anchors=estimated[start: start + n], anchor_index=anchor_index))
        start += n
    return out


def frame_anchors(frame: FrameLabels, anchor_index: int | None) -> np.ndarray:
    """``(n, 2)`` anchors of ``frame``'s instances: those :func:`attach_anchors` stored
    for ``anchor_index``, else :func:`rtpose.data.proximity.anchors` (the node, or the
    bounding-box centre)."""
    if frame.anchors is not None and frame.anchor_index == anchor_index:
        return frame.anchors
    return anchors(frame.points, anchor_index)


def hidden_anchors(frames: list[FrameLabels], anchor_index: int | None) -> int:
    """How many instances of ``frames`` have their anchor node hidden (0 with
    ``anchor_index`` None)."""
    if anchor_index is None:
        return 0
    return sum(int((~np.isfinite(f.points[:, anchor_index]).all(axis=-1)).sum()) for f in frames)
