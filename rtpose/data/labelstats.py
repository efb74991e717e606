"""What a labels file says about its animals, and the training settings that follow.

Torch-free: ``rtpose train LABELS.slp`` (rtpose.train.auto) derives a whole training
config from these figures, and a person can read them before anything trains. Every
rule here is a plain formula of the labels, named and explained where it is defined:

- the anchor part: among the most often visible nodes (at least 80% as often as the
  best), the one that needs the smallest crop (99th percentile of the Chebyshev
  distance from it to the other nodes); the centre of the visible nodes' bounding box
  where no node is visible in half the instances (``None``);
- the crop size: twice that reach, rounded up to the max stride;
- the centroid input scale: the smallest power-of-two downscale that keeps a typical
  animal (median bounding-box diagonal) at least ``MIN_ANIMAL_PX`` scaled pixels;
- sigmas proportional to the animal size (flies13's hand-tuned values at its size);
- a validation block: the last labelled frames of the last video, not random frames
  (neighbouring video frames are near copies, so a random split flatters the model);
- near-duplicate frames (animals that did not move since the last kept frame) thinned to
  one in ``DUPLICATE_KEEP_EVERY``, so a long still stretch does not drown the rest.

Bad labels raise :class:`RtposeError` with one line that says what to fix.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np

from rtpose.data.labels import FrameLabels
from rtpose.data.anchors import frame_anchors
from rtpose.data.proximity import nearest_other_anchor
from rtpose.errors import RtposeError

MIN_ANIMAL_PX = 12.0  # centroid net: a typical animal's bounding-box diagonal in scaled pixels
# centroid net: the closest anchors (5th percentile of each animal's nearest other) at least this many
# confidence-map pixels apart. Empirical, from mice2 alone (huddled mice, anchors 52 px apart): with one
# and the same instance net, whole-pipeline node error p90 on frames 60-69 was 20.7, 134 and 149 px with
# three centroid nets trained at 1/8 (3.2 map px: peaks of touching mice merged or moved), and 9.8-11.6 px
# with three of four trained at 1/4 (6.5 map px; the fourth 68 px). flies13's closest thoraxes (79-101 px)
# give 4.9-6.3 map px at 1/8, so its scale is unchanged.
MIN_ANCHOR_GAP_MAP_PX = 4.0
CENTROID_SIGMA_FRACTION = 0.1  # centroid sigma / scaled animal diagonal (flies13: 1.5 px at ~15 px)
INSTANCE_SIGMA_DIVISOR = 48.0  # instance sigma = animal diagonal / this (flies13: 2.5 px at ~121 px)
ANCHOR_VISIBILITY_SHARE = 0.8  # anchor candidates: visible at least this share as often as the best node
ANCHOR_MIN_VISIBILITY = 0.5  # below this, the bounding-box centre is the anchor
VAL_SHARE, VAL_MAX_FRAMES = 0.15, 50  # validation block size: 15% of labelled frames, at most 50
DUPLICATE_PX_FRACTION = 0.01  # a frame is a near copy when no instance moved 1% of the animal size
DUPLICATE_KEEP_EVERY = 10  # ... and then only every 10th such frame is kept (hand-tuned flies13: "0-999:10")


@attrs.define
class LabelStats:
    """Figures of the user-labelled instances, in frame pixels.

    Attributes:
        n_frames: labelled frames with at least one user instance.
        n_instances: user instances.
        node_names: skeleton nodes.
        class_names: track names (identity classes); empty without tracks.
        tracked: instances on a track.
        visibility: (nodes,) share of instances where each node is visible.
        animal_size_px: median diagonal of the instances' visible-node bounding boxes.
        max_instances: most instances in one frame.
        videos: the labelled videos, in file order.
    """

    n_frames: int
    n_instances: int
    node_names: list[str]
    class_names: list[str]
    tracked: int
    visibility: np.ndarray
    animal_size_px: float
    max_instances: int
    videos: list[Path]


def check_labels(frames: list[FrameLabels], node_names: list[str], class_names: list[str],
                 source: str | Path) -> None:
    """Refuse labels that cannot train a top-down model, in one line that says what to fix.

    Raises:
        RtposeError: no user instances; no instance with two visible nodes (the animal
            size, hence the crop, cannot be measured); tracks on some instances only.
    """
    n = sum(len(f.points) for f in frames)
    if n == 0:
        raise RtposeError(f"{source}: no user-labelled instances (predictions alone do not train a model): "
                          "label some frames in SLEAP first")
    most = max(int(np.isfinite(p).all(axis=-1).sum(axis=-1).max()) for f in frames for p in [f.points])
    if most < 2:
        what = "the skeleton has one node" if len(node_names) == 1 else "no instance has two visible nodes"
        raise RtposeError(f"{source}: {what}, so the animals' size (and the crop around them) cannot be "
                          "measured: label at least two nodes of some instances, or give the crop with "
                          "--set instance.crop_size=N")
    tracked = sum(int((f.classes >= 0).sum()) for f in frames)
    if class_names and 0 < tracked < n:
        raise RtposeError(f"{source}: {n - tracked} of {n} instances have no track: put every instance on a "
                          "track (to learn identities) or remove the tracks (or --set instance.class_head=null)")


def label_stats(frames: list[FrameLabels], node_names: list[str], class_names: list[str]) -> LabelStats:
    """Figures of ``frames`` (which must have passed :func:`check_labels`)."""
    points = np.concatenate([f.points for f in frames])  # (n, nodes, 2)
    visible = np.isfinite(points).all(axis=-1)
    multi = visible.sum(axis=1) >= 2
    lo, hi = np.nanmin(points[multi], axis=1), np.nanmax(points[multi], axis=1)
    diag = np.linalg.norm(hi - lo, axis=-1)
    videos = list(dict.fromkeys(f.video_path for f in frames))
    return LabelStats(
        n_frames=len(frames), n_instances=len(points), node_names=list(node_names), class_names=list(class_names),
        tracked=sum(int((f.classes >= 0).sum()) for f in frames), visibility=visible.mean(axis=0),
        animal_size_px=float(np.median(diag)) if len(diag) else float("nan"), max_instances=max(len(f.points) for f in frames),
        videos=videos,
    )


def anchor_reach(frames: list[FrameLabels], anchor_index: int | None, q: float = 99.0) -> float:
    """``q``-th percentile over instances of the largest Chebyshev distance (px) from
    the anchor to a visible node: half the crop side that holds that share of animals.

    ``anchor_index`` None: the centre of the visible nodes' bounding box. The anchors
    are those :func:`rtpose.data.anchors.attach_anchors` stored, where it ran.
    """
    reach = []
    for f in frames:
        for pts, a in zip(f.points, frame_anchors(f, anchor_index)):
            d = np.abs(pts - a).max(axis=1)
            if np.isfinite(d).any():
                reach.append(float(np.nanmax(d)))
    return float(np.percentile(reach, q)) if reach else 0.0


def choose_anchor(frames: list[FrameLabels], stats: LabelStats) -> tuple[str | None, float]:
    """The anchor part and its reach (see :func:`anchor_reach`).

    Among the nodes visible at least ``ANCHOR_VISIBILITY_SHARE`` times as often as the
    most visible one, the node with the smallest reach: central nodes make small crops
    (cheap and precise), visible ones make the anchor the node itself rather than the
    bounding-box fallback. ``None`` (bounding-box centre) when no node is visible in
    ``ANCHOR_MIN_VISIBILITY`` of the instances.
    """
    best_vis = float(stats.visibility.max())
    if best_vis < ANCHOR_MIN_VISIBILITY:
        return None, anchor_reach(frames, None)
    candidates = [i for i, v in enumerate(stats.visibility) if v >= ANCHOR_VISIBILITY_SHARE * best_vis]
    reaches = {i: anchor_reach(frames, i) for i in candidates}
    best = min(candidates, key=lambda i: (round(reaches[i], 1), -stats.visibility[i]))
    return stats.node_names[best], reaches[best]


def crop_size(reach_px: float, multiple: int) -> int:
    """Crop side (px): ``2 * reach``, rounded up to a multiple of ``multiple`` (the
    instance network's max stride), at least ``2 * multiple``."""
    return max(int(math.ceil(2 * reach_px / multiple) * multiple), 2 * multiple)


def centroid_input_scale(animal_size_px: float, frame_hw: tuple[int, int], max_downscale: int = 16,
                         anchor_gap_px: float = float("inf"), output_stride: int = 2) -> float:
    """The smallest power-of-two downscale (1, 1/2, ... 1/``max_downscale``) that keeps a
    typical animal at least ``MIN_ANIMAL_PX`` across, the frame at least 64 px, and the
    closest anchors (``anchor_gap_px``, see ``anchor_gap``) at least ``MIN_ANCHOR_GAP_MAP_PX``
    apart on the centroid confidence map (of ``output_stride``)."""
    scale = 1.0
    while (1 / scale) < max_downscale and animal_size_px * scale / 2 >= MIN_ANIMAL_PX \
            and min(frame_hw) * scale / 2 >= 64 and anchor_gap_px * scale / 2 / output_stride >= MIN_ANCHOR_GAP_MAP_PX:
        scale /= 2
    return scale


def anchor_gap(frames: list[FrameLabels], anchor_index: int | None, q: float = 5.0) -> float:
    """``q``-th percentile (px) over the instances of frames holding several animals of
    the distance from an instance's anchor to the nearest other anchor
    (``rtpose.data.proximity.nearest_other_anchor``, anchors from
    ``rtpose.data.anchors.frame_anchors``); inf when no frame holds two."""
    gaps = np.concatenate([nearest_other_anchor(frame_anchors(f, anchor_index)) for f in frames] or [np.zeros(0)])
    gaps = gaps[np.isfinite(gaps)]  # inf: alone in its frame, or without an anchor
    return float(np.percentile(gaps, q)) if len(gaps) else float("inf")


def centroid_sigma(animal_size_px: float, input_scale: float) -> float:
    """Centroid map sigma in scaled pixels, ``CENTROID_SIGMA_FRACTION`` of the scaled
    animal, within [1, 4]."""
    return round(float(np.clip(CENTROID_SIGMA_FRACTION * animal_size_px * input_scale, 1.0, 4.0)), 2)


def instance_sigma(animal_size_px: float) -> float:
    """Instance map sigma in crop pixels: animal diagonal / ``INSTANCE_SIGMA_DIVISOR``, within [1.5, 6]."""
    return round(float(np.clip(animal_size_px / INSTANCE_SIGMA_DIVISOR, 1.5, 6.0)), 2)


def format_selection(indices: list[int]) -> str:
    """Frame indices -> the ``"0-990:10, 1000-1079"`` selection syntax (rtpose.data.samples)."""
    idx = sorted(set(indices))
    parts, i = [], 0
    while i < len(idx):
        j = i
        if i + 1 < len(idx):
            step = idx[i + 1] - idx[i]
            while j + 1 < len(idx) and idx[j + 1] - idx[j] == step:
                j += 1
            if j - i < 2 and step != 1:  # fewer than 3 in a strided run: write singly
                j = i
        if j == i:
            parts.append(str(idx[i]))
        elif idx[i + 1] - idx[i] == 1:
            parts.append(f"{idx[i]}-{idx[j]}")
        else:
            parts.append(f"{idx[i]}-{idx[j]}:{idx[i + 1] - idx[i]}")
        i = j + 1
    return ", ".join(parts)


def validation_block(frames: list[FrameLabels]) -> list[FrameLabels]:
    """The last ``VAL_SHARE`` of the last video's labelled frames (at most
    ``VAL_MAX_FRAMES``, none with fewer than two labelled frames): consecutive frames,
    like the ones a model meets after its labels."""
    if len(frames) < 2:
        return []
    last_video = frames[-1].video_path
    own = sorted((f for f in frames if f.video_path == last_video), key=lambda f: f.frame_idx)
    n = int(np.clip(round(VAL_SHARE * len(frames)), 1, VAL_MAX_FRAMES))
    n = min(n, len(own) - 1) if len(own) == len(frames) else min(n, len(own))
    return own[len(own) - n:] if n > 0 else []


def thin_near_duplicates(frames: list[FrameLabels], animal_size_px: float) -> list[FrameLabels]:
    """Frames kept for training: a frame whose every instance moved (median node
    displacement, instances paired by track or order) less than ``DUPLICATE_PX_FRACTION``
    of the animal size since the last kept frame is kept only every
    ``DUPLICATE_KEEP_EVERY``-th time. Frames with another number of instances are kept."""
    thr = DUPLICATE_PX_FRACTION * animal_size_px
    kept: list[FrameLabels] = []
    skipped = 0
    for f in frames:
        last = kept[-1] if kept else None
        if last is None or last.video_path != f.video_path or not _same_poses(last, f, thr) \
                or skipped + 1 >= DUPLICATE_KEEP_EVERY:
            kept.append(f)
            skipped = 0
        else:
            skipped += 1
    return kept


def _same_poses(a: FrameLabels, b: FrameLabels, thr: float) -> bool:
    if len(a.points) != len(b.points):
        return False
    oa, ob = np.argsort(a.classes, kind="stable"), np.argsort(b.classes, kind="stable")
    d = np.linalg.norm(a.points[oa] - b.points[ob], axis=-1)  # (n, nodes)
    if not np.isfinite(d).any(axis=1).all():
        return False
    return bool((np.nanmedian(d, axis=1) < thr).all())
