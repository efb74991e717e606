"""Object keypoint similarity and the greedy matching of predictions to labels.

This is the matching step of the PoseTrack/VOC procedure the SLEAP paper uses, with the
conventions of sleap-nn's evaluator (our reference for agreement), all of which change
the numbers:

- OKS follows COCO's evaluator: a node contributes ``exp(-d^2 / (2 s^2 k^2))`` with
  ``k = 2 * sigma`` (sigma 0.025 for every node) and ``s^2`` the area of the
  ground-truth instance's bounding box over its *visible* nodes (not its square: the
  area already is a squared length). Averaged over the ground truth's visible nodes; a
  node the prediction lacks scores 0; a node the labels lack is left out.
- A ground-truth instance whose visible nodes span no area (one visible node, or nodes
  on one line) would make OKS an exact-equality test, so it is scored instead as
  ``max(0, 1 - mean distance / 50 px)`` over the nodes both instances have.
- Matching is greedy per frame: predictions in descending instance score (ties keep
  file order) each take the remaining ground-truth instance of highest similarity,
  if that similarity is above 0. A match is then a true positive at an OKS threshold
  when its OKS reaches it (see ``metrics.voc``).
"""

from __future__ import annotations

import attrs
import numpy as np

OKS_SIGMA = 0.025
DEGENERATE_AREA_PX2 = 1e-9
DEGENERATE_DISTANCE_PX = 50.0


def visible_bbox_area(points: np.ndarray) -> np.ndarray:
    """Bounding-box area over the visible nodes of ``(..., nodes, 2)``; NaN when none is."""
    visible = ~np.isnan(points).any(axis=-1)
    low = np.where(visible[..., None], points, np.inf).min(axis=-2)
    high = np.where(visible[..., None], points, -np.inf).max(axis=-2)
    with np.errstate(invalid="ignore"):
        area = np.prod(high - low, axis=-1)
    return np.where(visible.any(axis=-1), area, np.nan)


def similarity(gt: np.ndarray, pred: np.ndarray, sigma: float = OKS_SIGMA) -> np.ndarray:
    """OKS of every (ground truth, prediction) pair in every frame.

    Args:
        gt: ``(F, G, nodes, 2)`` labeled points, NaN where invisible or padding.
        pred: ``(F, P, nodes, 2)`` predicted points, NaN where missing or padding.

    Returns:
        ``(F, G, P)``; NaN for a ground-truth instance without visible nodes.
    """
    area = visible_bbox_area(gt)  # (F, G)
    gt_visible = ~np.isnan(gt).any(axis=-1)  # (F, G, N)
    pred_missing = np.isnan(pred).any(axis=-1)  # (F, P, N)
    squared = ((gt[:, :, None] - pred[:, None]) ** 2).sum(axis=-1)  # (F, G, P, N)
    squared = np.where(pred_missing[:, None], np.inf, squared)
    spread = (2.0 * sigma) ** 2
    normaliser = spread * (2.0 * (area + np.spacing(1)))  # (F, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        keypoint = np.exp(-(squared / normaliser[:, :, None, None]))
        keypoint = np.where(gt_visible[:, :, None], keypoint, 0.0)
        oks = keypoint.sum(axis=-1) / gt_visible.sum(axis=-1).astype(np.float64)[:, :, None]

    degenerate = area < DEGENERATE_AREA_PX2  # NaN compares False
    if degenerate.any():
        oks = np.where(degenerate[:, :, None], _distance_score(squared, gt_visible, pred_missing), oks)
    return oks


def _distance_score(squared: np.ndarray, gt_visible: np.ndarray, pred_missing: np.ndarray) -> np.ndarray:
    """``max(0, 1 - mean distance / 50 px)`` over nodes both instances have; 0 if none."""
    both = gt_visible[:, :, None] & ~pred_missing[:, None]  # (F, G, P, N)
    count = both.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(both, np.sqrt(np.where(both, squared, 0.0)), 0.0).sum(axis=-1) / count
        score = np.maximum(0.0, 1.0 - mean / DEGENERATE_DISTANCE_PX)
    return np.where(count > 0, score, 0.0)


@attrs.define
class Matches:
    """Matched pairs, ordered by frame, then by the prediction's rank in its frame.

    That order is the one the precision-recall curve sees before the stable sort by
    instance score, so ties in score resolve the same way as in sleap-nn.
    """

    frame: np.ndarray  # (M,) row in PairedFrames
    gt: np.ndarray  # (M,) ground-truth column
    pred: np.ndarray  # (M,) prediction column
    oks: np.ndarray  # (M,) similarity of the pair

    def __len__(self) -> int:
        return int(self.frame.shape[0])


def greedy_match(
    oks: np.ndarray,
    gt_present: np.ndarray,
    pred_present: np.ndarray,
    pred_scores: np.ndarray,
    min_similarity: float = 0.0,
) -> Matches:
    """Greedy matching in all frames at once; one step per prediction rank.

    Args:
        oks: ``(F, G, P)`` from :func:`similarity`.
        gt_present, pred_present: ``(F, G)`` and ``(F, P)`` masks of real instances.
        pred_scores: ``(F, P)`` instance scores; higher claims first.
        min_similarity: a pair must score above this to match.
    """
    n_frames, _, n_pred = oks.shape
    with np.errstate(invalid="ignore"):
        candidate = np.where(oks > min_similarity, oks, np.nan)
    rank = np.argsort(-pred_scores, axis=1, kind="stable")  # padding (-inf) sorts after real scores
    available = gt_present.copy()
    rows = np.arange(n_frames)
    found: list[tuple[np.ndarray, ...]] = []
    for step in range(n_pred):
        column = rank[:, step]
        row_oks = np.where(available, candidate[rows, :, column], np.nan)  # (F, G)
        has_match = pred_present[rows, column] & ~np.isnan(row_oks).all(axis=1)
        best = np.argmax(np.where(np.isnan(row_oks), -np.inf, row_oks), axis=1)  # first of ties
        f, g, p = rows[has_match], best[has_match], column[has_match]
        available[f, g] = False
        found.append((f, g, p, row_oks[f, g], np.full(f.shape, step)))
    if not found:
        empty = np.zeros(0, np.int64)
        return Matches(empty, empty, empty, np.zeros(0))
    f, g, p, s, step = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((step, f))
    return Matches(frame=f[order], gt=g[order], pred=p[order], oks=s[order])
