"""Figures computed from matched pairs: OKS mAP/mAR, errors, PCK, identity.

Every function takes plain arrays, so each figure can be tested on numbers small enough
to work out by hand.
"""

from __future__ import annotations

import numpy as np

OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50:0.05:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # 0.00:0.01:1.00
PERCENTILES = (50, 75, 90, 95, 99)


def voc(
    match_oks: np.ndarray,
    match_scores: np.ndarray,
    n_gt: int,
    thresholds: np.ndarray = OKS_THRESHOLDS,
    recall_points: np.ndarray = RECALL_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and recall at each OKS threshold (VOC, 101-point interpolation).

    The detections are the matched pairs, ranked by the prediction's instance score; at
    threshold t a pair is a true positive when its OKS >= t and a false positive
    otherwise. Recall is over all ``n_gt`` labeled instances, so a missed instance
    lowers the reachable recall. Precision is made non-increasing in recall, then read
    at the first detection whose recall reaches each recall point (0 where none does).
    AR at t is the final recall: the share of labeled instances matched with OKS >= t.

    As in SLEAP and sleap-nn, a prediction that matched nothing is not a detection in
    this curve; count those separately (``n_unmatched_pred``).

    Returns:
        ``(ap, ar)``, each ``(len(thresholds),)``; NaN when ``n_gt`` is 0.
    """
    n_thresholds = len(thresholds)
    if n_gt == 0:  # nothing to find: precision and recall are undefined, not 0
        return np.full(n_thresholds, np.nan), np.full(n_thresholds, np.nan)
    if match_oks.size == 0:  # nothing found (or nothing to find): 0, as sleap-nn reports
        return np.zeros(n_thresholds), np.zeros(n_thresholds)
    ranked = match_oks[np.argsort(-match_scores, kind="stable")]
    is_tp = ranked[None, :] >= np.asarray(thresholds)[:, None]  # (T, M)
    tp = np.cumsum(is_tp, axis=1)
    fp = np.cumsum(~is_tp, axis=1)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    n = ranked.size
    ap = np.empty(n_thresholds)
    for t in range(n_thresholds):
        first = np.searchsorted(recall[t], recall_points, side="left")
        ap[t] = np.where(first < n, precision[t, np.minimum(first, n - 1)], 0.0).mean()
    return ap, recall[:, -1].astype(np.float64)


def node_distances(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Euclidean error per node of matched pairs ``(M, nodes, 2)``; NaN where either lacks it."""
    return np.linalg.norm(pred - gt, axis=-1)


def distance_summary(distances: np.ndarray, percentiles=PERCENTILES) -> dict[str, float]:
    """Mean and percentiles over every node both instances have (NaN when there are none)."""
    values = distances[np.isfinite(distances)]
    if values.size == 0:
        return {"mean": float("nan"), **{f"p{q}": float("nan") for q in percentiles}}
    return {"mean": float(values.mean()),
            **{f"p{q}": float(v) for q, v in zip(percentiles, np.percentile(values, percentiles))}}


def pck(distances: np.ndarray, gt_visible: np.ndarray, threshold_px: float) -> float:
    """Share of labeled nodes of matched instances predicted within ``threshold_px``.

    A labeled node the prediction lacks counts as wrong; a node the labels lack is not
    counted. (sleap-nn's PCK also counts unlabeled nodes, as wrong; ours is that figure
    divided by the share of nodes labeled.)
    """
    n = int(gt_visible.sum())
    if n == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        correct = (distances < threshold_px) & gt_visible
    return float(correct.sum() / n)


def identity_accuracy(gt_track: np.ndarray, pred_track: np.ndarray) -> tuple[float, int]:
    """Share of matched labeled instances (with a track) whose predicted track name is the same.

    The caller passes the matched pairs whose prediction lies on its matched animal
    (no other labeled instance of the frame has a higher OKS with it). Greedy matching
    with no OKS floor lets a duplicate detection that claims an animal first push that
    animal's own prediction onto a neighbour; judging the neighbour's identity by that
    pair would report an identity error (and two switches) where the identities were
    right. An untracked prediction counts as wrong. Returns ``(accuracy, instances
    scored)``.
    """
    scored = np.array([t is not None for t in gt_track], bool)
    n = int(scored.sum())
    if n == 0:
        return float("nan"), 0
    same = np.array([g == p for g, p in zip(gt_track[scored], pred_track[scored])], bool)
    return float(same.mean()), n


def identity_switches(
    video: np.ndarray, frame_idx: np.ndarray, gt_track: np.ndarray, assigned: np.ndarray
) -> tuple[int, int]:
    """Identity switches along runs of consecutive labeled frames.

    Definition. Follow each labeled animal (ground-truth track, per video) through each
    run of consecutive frame indices in which it is labeled. Its *assigned identity* in
    a frame is the track name of the prediction matched to it (in the pairs that
    :func:`identity_accuracy` judges; other frames count as unmatched). A switch is
    counted each time the assigned identity differs from the one it last had in the
    same run. Frames
    where the animal is not matched, or matched to an untracked prediction, carry the
    last identity on: a miss is counted as a miss, not as a switch, and a swap that
    spans a miss is still seen. A gap in the labeled frames ends the run, because what
    happened in frames nobody labeled is unknown.

    This counts per animal, as CLEAR-MOT's IDSW does: two flies whose names are swapped
    for a stretch inside a run make 4 switches (each fly takes the other's name, then
    gets its own back). ``events`` counts the moments instead: the frames where any
    animal's identity changed (2 for that stretch), which is how many places a person
    proofreading the tracks has to fix. (An animal unmatched at the frame of a swap
    shows its change at its next matched frame, which can add an event.)

    Args:
        video, frame_idx: ``(K,)`` where each labeled instance is.
        gt_track: ``(K,)`` its track name (None: not followed).
        assigned: ``(K,)`` the matched prediction's track name, or None.

    Returns:
        ``(switches, events)``.
    """
    followed = np.array([t is not None for t in gt_track], bool)
    if not followed.any():
        return 0, 0
    video, frame_idx = video[followed], frame_idx[followed]
    animal = _codes(gt_track[followed])
    identity = _codes(assigned[followed])  # -1 for None
    order = np.lexsort((frame_idx, animal, video))
    video, frame_idx, animal, identity = video[order], frame_idx[order], animal[order], identity[order]
    new_run = np.ones(video.shape, bool)
    new_run[1:] = (video[1:] != video[:-1]) | (animal[1:] != animal[:-1]) | (frame_idx[1:] != frame_idx[:-1] + 1)
    run = np.cumsum(new_run)
    known = identity >= 0
    run, identity, video, frame_idx = run[known], identity[known], video[known], frame_idx[known]
    changed = np.zeros(run.shape, bool)
    changed[1:] = (run[1:] == run[:-1]) & (identity[1:] != identity[:-1])
    events = {(int(v), int(f)) for v, f in zip(video[changed], frame_idx[changed])}
    return int(changed.sum()), len(events)


def _codes(names: np.ndarray) -> np.ndarray:
    """Integer code per name, -1 for None."""
    index: dict[str, int] = {}
    return np.array([-1 if n is None else index.setdefault(n, len(index)) for n in names], np.int64)
