"""Score a predictions .slp against a ground-truth .slp: every figure under a stable key.

The keys of :func:`evaluate`'s result are the JSON that ``rtpose eval --json`` writes;
scripts depend on them, so add keys rather than rename them. NaN (a figure that is
undefined, e.g. the error when nothing matched) becomes ``null`` in JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping

import numpy as np

from rtpose.data.proximity import (PROXIMITY_BINS, DistanceSplit, distance_split, median_size, nearest_other,
                                   proximity_bin)
from rtpose.errors import RtposeError
from rtpose.eval import metrics
from rtpose.eval.oks import OKS_SIGMA, Matches, greedy_match, similarity
from rtpose.eval.pairing import PairedFrames, pair_frames

# "instances found": matched with OKS above this (as the issue tracker's figures count them)
FOUND_OKS = 0.5


def evaluate(
    gt_path: str | Path,
    pred_path: str | Path,
    frames: Collection[int] | None = None,
    px_per_mm: float | None = None,
    pck_px: float = 5.0,
    unpredicted: str = "skip",
    anchor_part: str | None = None,
    animal_size_px: float | None = None,
    model_split: bool = True,
) -> dict[str, Any]:
    """All figures for ``pred_path`` scored against ``gt_path``.

    ``frames`` limits scoring to those frame indices; ``unpredicted`` says whether a
    labeled frame without a predicted frame is left out ("skip") or all missed
    ("missed"), see ``pairing``. ``anchor_part`` and ``animal_size_px`` set how the
    figures are split by inter-animal distance (see :func:`by_proximity`); where one is
    None and ``model_split`` is true, the value the predictions' model recorded is used
    (:func:`recorded_split`), as the training report does, else the default.

    Raises:
        RtposeError: ``anchor_part`` is not a node of the ground truth's skeleton.
    """
    paired = pair_frames(gt_path, pred_path, frames, unpredicted=unpredicted)
    recorded, recorded_from = recorded_split(paired.pred_provenance, pred_path) if model_split else ({}, "")
    split = distance_split(anchor_part, animal_size_px, recorded, recorded_from)
    if split.anchor_part is not None and split.anchor_part not in paired.node_names:
        flag = "--anchor-part" if split.anchor_from == "given" else f"anchor part ({split.anchor_from})"
        raise RtposeError(f"{flag} {split.anchor_part!r} is not a node of {gt_path} "
                          f"({', '.join(paired.node_names)})")
    result = score(paired, px_per_mm=px_per_mm, pck_px=pck_px, split=split)
    return {"ground_truth": str(gt_path), "predictions": str(pred_path), "unpredicted_frames": unpredicted,
            **result}


# the predictions' provenance key holding the model's distance split (rtpose.engine.predict)
PROVENANCE_SPLIT = "rtpose.distance_split"


def recorded_split(provenance: Mapping[str, Any], pred_path: str | Path) -> tuple[dict[str, Any], str]:
    """What the model that made a predictions file recorded about its distance split.

    Read from the file's provenance (``rtpose.distance_split``, written by ``rtpose
    predict``), else from ``rtpose.json`` of the export its provenance names
    (``rtpose.model``) where that is still there (predictions made before the key
    existed).

    Returns:
        ``({"anchor_part": ..., "animal_size_px": ...}`` with the keys found, where they
        were read in words), or ``({}, "")`` when the file does not say.
    """
    split = provenance.get(PROVENANCE_SPLIT)
    if isinstance(split, Mapping) and split:
        model = provenance.get("rtpose.model")
        return dict(split), f"{Path(pred_path).name}'s provenance" + (f" (model {model})" if model else "")
    model = provenance.get("rtpose.model")
    spec_file = Path(str(model)) / "rtpose.json" if model else None
    if spec_file is None or not spec_file.is_file():
        return {}, ""
    try:
        spec = json.loads(spec_file.read_text())
    except (OSError, ValueError):
        return {}, ""
    found = {k: spec[k] for k in ("anchor_part", "animal_size_px") if k in spec}
    return (found, f"{spec_file}, the model in {Path(pred_path).name}'s provenance") if found else ({}, "")


def score(paired: PairedFrames, px_per_mm: float | None = None, pck_px: float = 5.0,
          split: DistanceSplit | None = None) -> dict[str, Any]:
    """The figures of already paired frames (see :func:`evaluate`); ``split``: how they
    are split by inter-animal distance (default: box centre, the labels' median size)."""
    oks = similarity(paired.gt_points, paired.pred_points, OKS_SIGMA)
    matches = greedy_match(oks, paired.gt_present, paired.pred_present, paired.pred_scores)
    n_gt = int(paired.gt_present.sum())
    n_pred = int(paired.pred_present.sum())

    scores = paired.pred_scores[matches.frame, matches.pred]
    ap, ar = metrics.voc(matches.oks, scores, n_gt)

    gt_points = paired.gt_points[matches.frame, matches.gt]
    distances = metrics.node_distances(gt_points, paired.pred_points[matches.frame, matches.pred])
    gt_visible = ~np.isnan(gt_points).any(axis=-1)
    # labelled nodes of matched pairs that the prediction left out: error percentiles are over
    # the nodes both have, so a model that predicts a few nodes well would look good without it
    pred_missing = np.isnan(paired.pred_points[matches.frame, matches.pred]).any(axis=-1)
    n_nodes_labelled = int(gt_visible.sum())
    n_nodes_not_predicted = int((gt_visible & pred_missing).sum())

    # Identity is judged only where the prediction lies on the animal it was matched to
    # (its best OKS over the frame's labels); see metrics.identity_accuracy.
    on_animal = _on_matched_animal(oks, matches)
    frame, gt, pred = matches.frame[on_animal], matches.gt[on_animal], matches.pred[on_animal]
    pred_track = paired.pred_track[frame, pred]
    id_accuracy, n_id_scored = metrics.identity_accuracy(paired.gt_track[frame, gt], pred_track)
    # the same over found instances only (OKS > 0.5): a pair far off its animal says
    # little about identity (the figure of the issue tables: "identity, of those found")
    found_pair = matches.oks[on_animal] > FOUND_OKS
    id_accuracy_found, n_id_found = metrics.identity_accuracy(paired.gt_track[frame[found_pair], gt[found_pair]],
                                                             pred_track[found_pair])

    assigned = np.full(paired.gt_present.shape, None, dtype=object)
    assigned[frame, gt] = pred_track
    frame_of = np.broadcast_to(np.arange(paired.n_frames)[:, None], paired.gt_present.shape)[paired.gt_present]
    switches, switch_events = metrics.identity_switches(
        paired.video[frame_of], paired.frame_idx[frame_of],
        paired.gt_track[paired.gt_present], assigned[paired.gt_present],
    )

    result: dict[str, Any] = {
        "n_frames": paired.n_frames,
        "frame_range": [int(paired.frame_idx.min()), int(paired.frame_idx.max())] if paired.n_frames else None,
        "n_frames_gt_only": paired.n_frames_gt_only,
        "n_gt_unscored": paired.n_gt_unscored,
        "n_frames_pred_only": paired.n_frames_pred_only,
        "n_gt": n_gt,
        "n_pred": n_pred,
        "n_pred_unscored": paired.n_pred_unscored,
        "n_matched": len(matches),
        "n_missed": n_gt - len(matches),
        "n_unmatched_pred": n_pred - len(matches),
        "map": float(ap.mean()),
        "mar": float(ar.mean()),
        "ap": {f"{t:.2f}": float(v) for t, v in zip(metrics.OKS_THRESHOLDS, ap)},
        "ar": {f"{t:.2f}": float(v) for t, v in zip(metrics.OKS_THRESHOLDS, ar)},
        "moks": float(matches.oks.mean()) if len(matches) else float("nan"),
        "n_found": int(np.sum(matches.oks > FOUND_OKS)),
        "found": int(np.sum(matches.oks > FOUND_OKS)) / n_gt if n_gt else float("nan"),
        "oks_sigma": OKS_SIGMA,
        "dist_px": metrics.distance_summary(distances),
        "n_nodes_labelled": n_nodes_labelled,
        "n_nodes_not_predicted": n_nodes_not_predicted,
        "pck_px": float(pck_px),
        "pck": metrics.pck(distances, gt_visible, pck_px),
        "id_accuracy": id_accuracy,
        "n_id_scored": n_id_scored,
        "id_accuracy_found": id_accuracy_found,
        "n_id_found": n_id_found,
        "id_switches": switches,
        "id_switch_events": switch_events,
        "px_per_mm": px_per_mm,
        "warnings": list(paired.warnings),
    }
    if px_per_mm:
        result["dist_mm"] = metrics.distance_summary(distances / px_per_mm)
    result.update(by_proximity(paired, matches, scores, distances, on_animal, split or DistanceSplit()))
    return result


def by_proximity(paired: PairedFrames, matches: Matches, scores: np.ndarray, distances: np.ndarray,
                 on_animal: np.ndarray, split: DistanceSplit) -> dict[str, Any]:
    """The main figures per inter-animal distance bin (``rtpose.data.proximity``).

    Each labeled instance falls in a bin by the distance from its anchor (the node
    ``split.anchor_part``, else its bounding-box centre) to the nearest other labeled
    anchor of its frame, in units of ``split.animal_size_px`` (default: the median size,
    sqrt of the bounding-box area, of the scored labeled instances). A bin's mAP counts
    its labeled instances and the predictions matched to them.

    Returns:
        ``{"proximity": {"anchor_part", "animal_size_px", "bins": {lower bound...},
        "anchor_part_from", "animal_size_from"}, "by_proximity": {bin: {n_gt, n_found,
        found, map, moks, dist_px, id_accuracy}}}``.
    """
    anchor_part = split.anchor_part
    anchor = paired.node_names.index(anchor_part) if anchor_part else None
    size = split.animal_size_px or median_size(list(paired.gt_points[paired.gt_present]))
    nearest = np.stack([nearest_other(f, anchor) for f in paired.gt_points]) if paired.n_frames else \
        np.zeros(paired.gt_present.shape)
    bins = proximity_bin(nearest, size)
    matched_bin = bins[matches.frame, matches.gt]
    out: dict[str, Any] = {}
    for name, _ in PROXIMITY_BINS:
        in_bin = paired.gt_present & (bins == name)
        sel = matched_bin == name
        n_gt = int(in_bin.sum())
        ap, _ = metrics.voc(matches.oks[sel], scores[sel], n_gt) if n_gt else (np.full(1, np.nan), None)
        d = distances[sel]
        id_sel = sel & on_animal
        acc, _ = metrics.identity_accuracy(paired.gt_track[matches.frame[id_sel], matches.gt[id_sel]],
                                           paired.pred_track[matches.frame[id_sel], matches.pred[id_sel]])
        n_found = int(np.sum(matches.oks[sel] > FOUND_OKS))
        out[name] = {
            "n_gt": n_gt,
            "n_found": n_found,
            "found": n_found / n_gt if n_gt else float("nan"),
            "map": float(ap.mean()),
            "moks": float(matches.oks[sel].mean()) if sel.any() else float("nan"),
            "dist_px": metrics.distance_summary(d),
            "id_accuracy": acc,
        }
    return {"proximity": {"anchor_part": anchor_part, "animal_size_px": float(size),
                          "bins": {name: lower for name, lower in PROXIMITY_BINS},
                          "anchor_part_from": split.anchor_from, "animal_size_from": split.size_from,
                          "described": split.describe(float(size))},
            "by_proximity": out}


def _on_matched_animal(oks: np.ndarray, matches: Matches) -> np.ndarray:
    """(M,) True where no labeled instance of the frame is more similar to the prediction."""
    per_pred = oks[matches.frame, :, matches.pred]  # (M, G)
    best = np.where(np.isnan(per_pred), -np.inf, per_pred).max(axis=1, initial=-np.inf)
    return matches.oks >= best


