"""Ground-truth and predicted instances of the same frames, as padded arrays.

Frames are paired by video and frame index. A frame is scored when it has at least one
user instance in the ground truth (a labeled frame is the only place where we know
what should have been found) and the predictions file has that frame:

- a predicted frame with no instances is scored: its labeled instances are missed;
- a labeled frame the predictions file lacks is left out by default, as sleap-nn's
  evaluator does (predictions made on a test split are routinely scored against a
  labels file that covers more frames). ``unpredicted="missed"`` counts its instances
  as missed instead, for predictors that drop the frames where they found nothing;
- a predicted frame with no labels is not scored: unlabeled is not the same as empty,
  and labels usually cover a sample of the frames a model ran on.

Frames of the last two kinds are counted (``n_frames_gt_only``, ``n_frames_pred_only``)
and a warning says when they change what is scored. When no labeled frame has a
predicted frame there is nothing to score, and that is an error: where the videos pair,
it names the file with no frame in the frames asked for and the frames each file
holds; where they do not, both files' videos (unless ``unpredicted="missed"`` and the
videos pair: then every labeled instance was missed, a score of 0 that means something).

Videos are paired with sleap-io's ``Labels.match`` (path, then file identity, then
shape and pose cues), the same pairing sleap-nn's evaluator uses, so a predictions file
that stores the video under another directory still pairs with its labels.

Padding every frame to the most instances in any frame lets OKS and matching run as a
few array operations over all frames instead of a Python loop per frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection

import attrs
import numpy as np
import sleap_io as sio

from rtpose.data.labels import load_labels
from rtpose.data.video import describe_span
from rtpose.errors import RtposeError


@attrs.define
class PairedFrames:
    """Instances of the scored frames; ``F`` frames, up to ``G`` labeled and ``P`` predicted each.

    Attributes:
        video: ``(F,)`` index into ``video_names``.
        frame_idx: ``(F,)`` frame index in its video.
        gt_points: ``(F, G, nodes, 2)`` float64, NaN for invisible nodes and padding.
        gt_present: ``(F, G)`` True where a ground-truth instance exists.
        gt_track: ``(F, G)`` object, track name or None.
        pred_points: ``(F, P, nodes, 2)`` float64, NaN for invisible nodes and padding.
        pred_present: ``(F, P)`` True where a predicted instance exists.
        pred_scores: ``(F, P)`` float64 instance scores (they order detections).
        pred_track: ``(F, P)`` object, track name or None.
        n_frames_gt_only: labeled frames the predictions file has no frame for (scored
            as all missed, or left out, as asked).
        n_gt_unscored: labeled instances in the labeled frames left out.
        n_frames_pred_only: predicted frames with no labels (not scored).
        n_pred_unscored: predicted instances in those frames.
        warnings: one-line notes for the user (nothing here is an error).
        pred_provenance: the predictions file's provenance (what made it).
    """

    video_names: list[str]
    node_names: list[str]
    video: np.ndarray
    frame_idx: np.ndarray
    gt_points: np.ndarray
    gt_present: np.ndarray
    gt_track: np.ndarray
    pred_points: np.ndarray
    pred_present: np.ndarray
    pred_scores: np.ndarray
    pred_track: np.ndarray
    n_frames_gt_only: int = 0
    n_gt_unscored: int = 0
    n_frames_pred_only: int = 0
    n_pred_unscored: int = 0
    warnings: list[str] = attrs.field(factory=list)
    pred_provenance: dict = attrs.field(factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.frame_idx.shape[0])


def _track_name(instance: sio.Instance) -> str | None:
    return instance.track.name if instance.track is not None else None


def _node_order(pred: sio.Labels, node_names: list[str], pred_path: Path) -> np.ndarray | None:
    """Column of each ground-truth node in the predictions' skeleton (None: same order)."""
    if not pred.skeletons:
        return None
    pred_nodes = [n.name for n in pred.skeletons[0].nodes]
    if pred_nodes == node_names:
        return None
    if sorted(pred_nodes) != sorted(node_names):
        raise RtposeError(
            f"{pred_path}: skeleton nodes ({', '.join(pred_nodes)}) differ from the ground truth's "
            f"({', '.join(node_names)})"
        )
    return np.array([pred_nodes.index(n) for n in node_names])


def _pad(rows: list[list], shape_tail: tuple[int, ...], fill, dtype) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1), *shape_tail), fill, dtype=dtype)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = np.asarray(r, dtype=dtype) if dtype is not object else _object_row(r)
    return out


def _object_row(values: list) -> np.ndarray:
    row = np.empty(len(values), dtype=object)
    row[:] = values
    return row


def _video_names(labels: sio.Labels) -> str:
    """The videos of a labels file for a message: file names, a package's source video beside it."""
    names = []
    for v in labels.videos:
        source = getattr(v, "source_video", None)
        names.append(f"{v.filename} (frames of {source.filename})" if source is not None else str(v.filename))
    return ", ".join(names) or "none"


def _held(indices: list[int], keep=lambda f: True, empty: Collection[int] = (), absent: str = "not in the file") -> str:
    """``"1200-1299 (100 frames)"``, ``"0-69 (69 of 70 frames; 35 has no instances)"``: the
    span and count of frame indices, and what the span lacks, for a message
    (:func:`rtpose.data.video.describe_span`)."""
    return describe_span([f for f in indices if keep(f)], [f for f in empty if keep(f)], absent)


def pair_frames(
    gt_path: str | Path,
    pred_path: str | Path,
    frames: Collection[int] | None = None,
    unpredicted: str = "skip",
) -> PairedFrames:
    """Load both files and pair their frames (optionally only frame indices in ``frames``).

    ``unpredicted``: "skip" or "missed", what a labeled frame without a predicted frame
    counts as (see the module docstring).

    Raises:
        RtposeError: a file cannot be read, the skeletons differ, there are no labeled
            instances, or no frame pairs (see the module docstring).
    """
    if unpredicted not in ("skip", "missed"):
        raise ValueError(f"unpredicted must be 'skip' or 'missed', not {unpredicted!r}")
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt = load_labels(gt_path, open_videos=False)
    pred = load_labels(pred_path, open_videos=False)
    if not gt.skeletons:
        raise RtposeError(f"{gt_path}: the file has no skeleton")
    node_names = [n.name for n in gt.skeletons[0].nodes]
    order = _node_order(pred, node_names, pred_path)
    in_range = (lambda f: True) if frames is None else (lambda f: f in frames)
    notes: list[str] = []

    # A file with any PredictedInstance is a predictions file and only those count; a
    # file of user instances alone (another annotator, or the labels themselves) is
    # scored as predictions with score 1.
    use_predicted = any(lf.has_predicted_instances for lf in pred.labeled_frames)

    gt_video_index = {id(v): i for i, v in enumerate(gt.videos)}
    video_map = gt.match(pred).video_map if pred.videos and gt.videos else {}
    pred_to_gt_video = {id(pv): gt_video_index[id(gv)] for pv, gv in video_map.items() if gv is not None}
    if pred.labeled_frames and not pred_to_gt_video:
        notes.append(f"no video of {pred_path} matches a video of {gt_path}")

    predicted: dict[tuple[int, int], list[tuple[np.ndarray, float, str | None]]] = {}
    pred_held = []  # frame indices of the predictions' frames of a paired video, in range or not (for messages)
    for lf in pred.labeled_frames:
        video = pred_to_gt_video.get(id(lf.video), -1)
        if video >= 0:
            pred_held.append(int(lf.frame_idx))
        if not in_range(int(lf.frame_idx)):
            continue
        instances = lf.predicted_instances if use_predicted else lf.user_instances
        entries = predicted.setdefault((video, int(lf.frame_idx)), [])
        for inst in instances:
            points = inst.numpy().astype(np.float64)
            if order is not None:
                points = points[order]
            entries.append((points, float(inst.score) if use_predicted else 1.0, _track_name(inst)))

    keys, gt_rows, pred_rows = [], [], []
    n_labeled_frames = n_gt_only = n_gt_unscored = 0
    for lf in gt.labeled_frames:
        users = lf.user_instances
        if not users or not in_range(int(lf.frame_idx)):
            continue
        n_labeled_frames += 1
        key = (gt_video_index[id(lf.video)], int(lf.frame_idx))
        if key not in predicted:
            n_gt_only += 1
            if unpredicted == "skip":
                n_gt_unscored += len(users)
                continue
        keys.append(key)
        gt_rows.append([(u.numpy().astype(np.float64), _track_name(u)) for u in users])
        pred_rows.append(predicted.get(key))
    where = ""
    if isinstance(frames, range):
        where = f" in frames {frames.start}-{frames.stop - 1}"
    elif frames is not None:
        where = " in the frames asked for"
    gt_held = [int(lf.frame_idx) for lf in gt.labeled_frames if lf.user_instances]
    gt_empty = [int(lf.frame_idx) for lf in gt.labeled_frames if not lf.user_instances]
    if not n_labeled_frames:
        holds = f" (it holds labeled frames {_held(gt_held, empty=gt_empty, absent='not labeled')})" \
            if where and gt_held else ""
        swapped = ""
        if not gt_held and any(lf.predicted_instances for lf in gt.labeled_frames) \
                and any(lf.user_instances for lf in pred.labeled_frames):
            swapped = (f" ({gt_path} holds predicted instances and {pred_path} user-labeled ones: "
                       "are -g and -p swapped?)")
        raise RtposeError(f"{gt_path}: no user-labeled instances{where} to score against{holds}{swapped}")

    paired = sum(1 for r in pred_rows if r is not None)
    if not paired and pred_to_gt_video and unpredicted == "skip":  # the videos pair; the frames do not
        pred_in_range = [f for f in pred_held if in_range(f)]
        if where and not pred_in_range:
            raise RtposeError(f"{pred_path}: no predicted frame{where} (it holds frames {_held(pred_held)}; "
                              f"{gt_path} holds labeled frames {_held(gt_held, empty=gt_empty, absent='not labeled')}"
                              "): nothing to score")
        raise RtposeError(f"no labeled frame of {gt_path}{where} (labeled frames "
                          f"{_held(gt_held, in_range, gt_empty, 'not labeled')}) has a "
                          f"frame in {pred_path} (frames {_held(pred_in_range)}): nothing to score")
    if not paired and (unpredicted == "skip" or not pred_to_gt_video):
        raise RtposeError(
            f"no frame of {pred_path} (video {_video_names(pred)}) pairs with a labeled frame of {gt_path} "
            f"(video {_video_names(gt)}): nothing to score")
    scored = set(keys)
    pred_only = [k for k in predicted if k not in scored]
    if n_gt_only:
        effect = ("left out (--unpredicted-frames missed counts them as missed)" if unpredicted == "skip"
                  else "counted as missed")
        notes.append(f"{n_gt_only} of {n_labeled_frames} labeled frames of {gt_path} have no frame in {pred_path}: "
                     f"{effect}")
    n_nodes = len(node_names)
    return PairedFrames(
        video_names=[str(v.filename) for v in gt.videos],
        node_names=node_names,
        video=np.array([k[0] for k in keys], np.int64),
        frame_idx=np.array([k[1] for k in keys], np.int64),
        gt_points=_pad([[p for p, _ in r] for r in gt_rows], (n_nodes, 2), np.nan, np.float64),
        gt_present=_pad([[True] * len(r) for r in gt_rows], (), False, bool),
        gt_track=_pad([[t for _, t in r] for r in gt_rows], (), None, object),
        pred_points=_pad([[p for p, _, _ in r or []] for r in pred_rows], (n_nodes, 2), np.nan, np.float64),
        pred_present=_pad([[True] * len(r or []) for r in pred_rows], (), False, bool),
        pred_scores=_pad([[s for _, s, _ in r or []] for r in pred_rows], (), -np.inf, np.float64),
        pred_track=_pad([[t for _, _, t in r or []] for r in pred_rows], (), None, object),
        n_frames_gt_only=n_gt_only,
        n_gt_unscored=n_gt_unscored,
        n_frames_pred_only=len(pred_only),
        n_pred_unscored=sum(len(predicted[k]) for k in pred_only),
        warnings=notes,
        pred_provenance=dict(pred.provenance or {}),
    )
