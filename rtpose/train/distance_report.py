"""The distance-split validation report a training run leaves in its model dir.

After both networks are trained, the whole top-down pipeline (centroid net, crops,
centered-instance net, peaks, Hungarian identities: what the exported graph computes,
in torch) runs on the validation frames, and ``rtpose eval``'s figures are computed
on it, overall and split by inter-animal distance (``rtpose.data.proximity``), so the
user sees at once whether the model holds when the animals touch.

``validation_report.json`` holds the figures under ``rtpose eval --json``'s keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from rtpose.data.labels import FrameLabels
from rtpose.data.proximity import DistanceSplit
from rtpose.data.samples import FrameCache
from rtpose.engine.base import assign_identities
from rtpose.eval.command import proximity_table, result_table
from rtpose.eval.evaluate import score
from rtpose.eval.pairing import PairedFrames
from rtpose import jsonsafe

REPORT = "validation_report.json"


def _pad(rows: list[np.ndarray], width: int, tail: tuple[int, ...], fill, dtype) -> np.ndarray:
    out = np.full((len(rows), width, *tail), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@torch.no_grad()
def predict_frames(pipeline: torch.nn.Module, frames: list[FrameLabels], cache: FrameCache,
                   point_threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame: points ``(n, nodes, 2)`` (NaN under ``point_threshold``), instance
    scores ``(n,)`` and class indices ``(n,)`` (Hungarian over the class probabilities)."""
    out = []
    for f in frames:
        image = torch.from_numpy(np.ascontiguousarray(cache[f]))[None, None]
        points, point_scores, inst_scores, probs, valid = (t[0].numpy() for t in pipeline(image))
        points = points[valid].astype(np.float64)
        points[point_scores[valid] < point_threshold] = np.nan
        probs = probs[valid]
        classes = assign_identities(probs) if probs.shape[-1] else np.full(len(points), -1, np.int32)
        out.append((points, inst_scores[valid].astype(np.float64), classes))
    return out


def validation_report(model_dir: Path, frames: list[FrameLabels], cache: FrameCache, classes: list[str],
                      split: DistanceSplit, console: Console | None = None,
                      ground_truth: str = "validation frames of the training config") -> dict[str, Any]:
    """Score the model dir's pipeline on ``frames``, write ``REPORT`` there, print the tables.

    ``ground_truth``: what the frames are, in words (the report's ``ground_truth``, the
    table's title).

    ``split``: the anchor part and size unit of the distance split, from the run's
    ``model.json`` through ``rtpose.data.proximity.distance_split``, as ``rtpose eval``
    reads them from predictions of the exported model."""
    from rtpose.export.onnx_export import build_pipeline

    pipeline, info = build_pipeline(model_dir)
    preds = predict_frames(pipeline, frames, cache, float(info["point_threshold"]))
    names = np.array(list(classes) + [None], dtype=object)  # class -1 -> None
    g = max((len(f.points) for f in frames), default=1)
    p = max((len(pts) for pts, _, _ in preds), default=1)
    n_nodes = len(info["node_names"])
    videos = sorted({str(f.video_path) for f in frames})
    paired = PairedFrames(
        video_names=videos, node_names=list(info["node_names"]),
        video=np.array([videos.index(str(f.video_path)) for f in frames], np.int64),
        frame_idx=np.array([f.frame_idx for f in frames], np.int64),
        gt_points=_pad([f.points.astype(np.float64) for f in frames], g, (n_nodes, 2), np.nan, np.float64),
        gt_present=_pad([np.ones(len(f.points), bool) for f in frames], g, (), False, bool),
        gt_track=_pad([names[f.classes] for f in frames], g, (), None, object),
        pred_points=_pad([pts for pts, _, _ in preds], p, (n_nodes, 2), np.nan, np.float64),
        pred_present=_pad([np.ones(len(pts), bool) for pts, _, _ in preds], p, (), False, bool),
        pred_scores=_pad([s for _, s, _ in preds], p, (), -np.inf, np.float64),
        pred_track=_pad([names[c] for _, _, c in preds], p, (), None, object),
    )
    result = score(paired, split=split)
    result = {"ground_truth": ground_truth, "predictions": "torch pipeline (fp32)",
              "unpredicted_frames": "skip", "frames": [int(f.frame_idx) for f in frames], **result}
    (model_dir / REPORT).write_text(jsonsafe.dumps(result, indent=2) + "\n")
    if console is not None:
        console.print(result_table(result))
        console.print(proximity_table(result))
    return result
