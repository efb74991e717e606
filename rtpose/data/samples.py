"""Training samples for the two networks, built once and augmented on the fly.

Frames are decoded once into memory. The centroid net gets whole frames downscaled by
box averaging, exactly as the exported graph does it; the centered-instance net gets a
square patch around each instance, large enough that any rotation and scale of the crop
stays inside it. Augmentation then costs one ``cv2.warpAffine`` per sample, so two CPU
cores spend their time on the network, not on data.

Validation samples are not augmented and are cut the way inference cuts them (integer
crop centres, no interpolation), so validation figures predict deployment.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np

from rtpose.data.augment import (AugmentParams, adjust_intensity, affine_about, paste_neighbour, random_affine,
                                 transform_points, warp)
from rtpose.data.labels import FrameLabels
from rtpose.data.anchors import frame_anchors
from rtpose.data.proximity import nearest_other_anchor
from rtpose.data.selection import parse_frame_selection
from rtpose.data.targets import confidence_maps, input_to_map, scale_coords
from rtpose.data.video import VideoReader, describe_indices
from rtpose.errors import RtposeError

def select_frames(frames: list[FrameLabels], selection: str | None) -> list[FrameLabels]:
    """The labeled frames whose index falls in ``selection`` (None: all)."""
    if selection is None:
        return list(frames)
    wanted: set[int] = set()
    for start, last, step in parse_frame_selection(selection):
        wanted.update(range(start, last + 1, step))
    return [f for f in frames if f.frame_idx in wanted]


def split_frames(frames: list[FrameLabels], train_sel: str | None, val_sel: str | None,
                 val_fraction: float | None, seed: int) -> tuple[list[FrameLabels], list[FrameLabels]]:
    """Train and validation frames, never overlapping.

    With ``val_sel`` the split is explicit (consecutive video frames are near copies of
    each other, so a held-out block says more than a random sample); otherwise a seeded
    random ``val_fraction`` of the training selection.
    """
    train = select_frames(frames, train_sel)
    if val_sel is not None:
        val = select_frames(frames, val_sel)
        if not val:  # else the "validation loss" would be the training loss, and the best epoch the last
            held = sorted({f.frame_idx for f in frames})
            raise RtposeError(f"data.val_frames {val_sel!r} selects no labelled frame (the labels hold frames "
                              f"{describe_indices(held)}); choose a block of those, or leave val_frames out "
                              "to hold out val_fraction at random")
        val_keys = {(f.video_path, f.frame_idx) for f in val}
        train = [f for f in train if (f.video_path, f.frame_idx) not in val_keys]
    elif val_fraction:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        n_val = max(1, int(round(val_fraction * len(train))))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    else:
        val = []
    if not train:
        raise RtposeError("no training frames selected (check data.train_frames)")
    return train, val


class FrameCache:
    """Decoded grayscale frames by (video, index); each video is read in index order."""

    def __init__(self, frames: list[FrameLabels]):
        self.images: dict[tuple[Path, int], np.ndarray] = {}
        by_video: dict[Path, list[int]] = {}
        for f in frames:
            by_video.setdefault(f.video_path, []).append(f.frame_idx)
        for path, indices in by_video.items():
            with VideoReader(path) as reader:
                for i in sorted(set(indices)):
                    self.images[(path, i)] = reader.read(i)

    def __getitem__(self, frame: FrameLabels) -> np.ndarray:
        return self.images[(frame.video_path, frame.frame_idx)]


def box_downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Box-average downscale by 1/k (what the graph's AveragePool does), float32 0-255."""
    inv = 1.0 / scale
    k = int(round(inv))
    if abs(inv - k) > 1e-6:
        import cv2

        h, w = image.shape
        return cv2.resize(image.astype(np.float32), (int(round(w * scale)), int(round(h * scale))),
                          interpolation=cv2.INTER_LINEAR)
    h, w = image.shape
    hh, ww = h // k, w // k
    img = image[: hh * k, : ww * k].astype(np.float32)
    return img.reshape(hh, k, ww, k).mean(axis=(1, 3))


@attrs.define
class Batch:
    images: np.ndarray  # (B, 1, h, w) float32 in [0, 1]
    confmaps: np.ndarray  # (B, C, hm, wm) float32
    classes: np.ndarray | None = None  # (B,) int64, -1 = unknown
    points: np.ndarray | None = None  # (B, inst, nodes, 2) input pixels (for metrics)


class CentroidSamples:
    """Whole frames at ``input_scale`` with multi-peak anchor maps."""

    def __init__(self, frames: list[FrameLabels], cache: FrameCache, anchor_index: int, input_scale: float,
                 sigma: float, output_stride: int, multiple: int, augment: AugmentParams):
        self.scale = input_scale
        self.sigma = sigma
        self.stride = output_stride
        self.augment = augment
        self.images = []
        self.anchors = []
        closest = []  # per frame: the smallest anchor-to-anchor distance (px; inf with one animal)
        for f in frames:
            small = box_downscale(cache[f], input_scale)
            h, w = small.shape
            H, W = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
            if (H, W) != (h, w):  # pad like the graph does (bottom/right)
                small = np.pad(small, ((0, H - h), (0, W - w)))
            self.images.append(small / 255.0)
            anchors = frame_anchors(f, anchor_index)
            closest.append(nearest_other_anchor(anchors).min(initial=np.inf))
            anchors = anchors[np.isfinite(anchors).all(axis=1)]
            self.anchors.append(scale_coords(anchors, input_scale).astype(np.float32))
        self.closest = np.array(closest)
        self.shape = self.images[0].shape

    def __len__(self) -> int:
        return len(self.images)

    def _make(self, image: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape
        hm, wm = h // self.stride, w // self.stride
        cm = confidence_maps(input_to_map(anchors, self.stride)[:, None, :], hm, wm, self.sigma / self.stride)
        return image[None].astype(np.float32), cm

    def sample(self, i: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        image, anchors = self.images[i], self.anchors[i]
        if rng is not None:
            h, w = image.shape
            centre = np.array([(w - 1) / 2, (h - 1) / 2])
            m, _ = random_affine(rng, self.augment, centre, centre)  # anchors have no side
            image = adjust_intensity(warp(image.astype(np.float32), m, (h, w)), rng, self.augment)
            anchors = transform_points(anchors, m)
        return self._make(image, anchors)

    def batch(self, indices, rng: np.random.Generator | None) -> Batch:
        imgs, cms = zip(*(self.sample(i, rng) for i in indices))
        pts = [self.anchors[i] for i in indices]
        n = max(len(p) for p in pts)
        points = np.full((len(indices), max(n, 1), 1, 2), np.nan, np.float32)
        for b, p in enumerate(pts):
            points[b, : len(p), 0] = p
        return Batch(np.stack(imgs), np.stack(cms), points=points)


class InstanceSamples:
    """Crops centred on each instance's anchor, at full resolution."""

    def __init__(self, frames: list[FrameLabels], cache: FrameCache, anchor_index: int, crop_size: int,
                 sigma: float, output_stride: int, center_jitter_px: float, augment: AugmentParams,
                 mirror_order: np.ndarray | None = None):
        """``mirror_order``: node order of a mirrored sample (:func:`mirror_order`); None
        keeps the order (a skeleton without left and right)."""
        self.crop = crop_size
        self.mirror_order = mirror_order
        self.sigma = sigma
        self.stride = output_stride
        self.jitter = center_jitter_px
        self.augment = augment
        max_scale_in = 1.0 / min(augment.scale)
        half_patch = int(math.ceil(crop_size / 2 * math.sqrt(2) * max_scale_in + center_jitter_px + 2))
        self.half_patch = half_patch
        self.patches, self.points, self.anchors, self.classes = [], [], [], []
        closest = []  # per instance: distance (px) from its anchor to the nearest other animal's
        for f in frames:
            image = cache[f]
            padded = np.pad(image, half_patch)
            frame_anchor = frame_anchors(f, anchor_index)
            for pts, cls, near, anchor in zip(f.points, f.classes, nearest_other_anchor(frame_anchor), frame_anchor):
                if not np.isfinite(anchor).all():
                    continue
                cx, cy = int(round(anchor[0])), int(round(anchor[1]))
                # padded[cy : cy + 2h] covers image rows cy - h .. cy + h - 1
                patch = padded[cy: cy + 2 * half_patch, cx: cx + 2 * half_patch]
                origin = np.array([cx - half_patch, cy - half_patch], np.float32)
                self.patches.append(patch)
                self.points.append((pts - origin).astype(np.float32))
                self.anchors.append((anchor - origin).astype(np.float32))
                self.classes.append(int(cls))
                closest.append(near)
        self.closest = np.array(closest, np.float64)
        if not self.patches:
            raise RtposeError("no instance has a visible anchor or any visible node")
        self.classes = np.array(self.classes, np.int64)
        # how far an animal reaches from its anchor (95th percentile of node distances)
        reach = np.concatenate([np.linalg.norm(p - a, axis=1) for p, a in zip(self.points, self.anchors)])
        self.body_radius = float(np.nanpercentile(reach, 95)) if np.isfinite(reach).any() else crop_size / 2

    def _neighbour(self, i: int, rng: np.random.Generator) -> int:
        """Another instance to paste beside ``i``, of another class where there is one."""
        others = np.flatnonzero(self.classes != self.classes[i]) if self.classes[i] >= 0 else np.zeros(0, int)
        if others.size == 0:
            others = np.delete(np.arange(len(self.patches)), i)
        return int(rng.choice(others))

    def __len__(self) -> int:
        return len(self.patches)

    def sample(self, i: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        half = self.crop // 2
        if rng is not None:
            dst = np.array([half, half], np.float64) + rng.uniform(-self.jitter, self.jitter, 2)
            m, mirrored = random_affine(rng, self.augment, self.anchors[i], dst)
        else:
            mirrored = False
            # What inference does: an integer-centred crop, no resampling.
            centre = np.round(self.anchors[i])
            m = affine_about(centre, np.array([half, half]), 0.0, 1.0)
        crop = warp(self.patches[i], m, (self.crop, self.crop)).astype(np.float32)
        if rng is not None and len(self.patches) > 1 and rng.random() < self.augment.neighbour_probability:
            j = self._neighbour(i, rng)
            crop = paste_neighbour(crop, self.patches[j], self.anchors[j], rng, self.augment, self.body_radius)
        crop /= 255.0
        if rng is not None:
            crop = adjust_intensity(crop, rng, self.augment)
        pts = transform_points(self.points[i], m)
        if mirrored and self.mirror_order is not None:  # the left wing is now where a right wing would be
            pts = pts[self.mirror_order]
        hm = self.crop // self.stride
        cm = confidence_maps(input_to_map(pts, self.stride)[None], hm, hm, self.sigma / self.stride)
        return crop[None], cm, pts

    def batch(self, indices, rng: np.random.Generator | None) -> Batch:
        crops, cms, pts = zip(*(self.sample(i, rng) for i in indices))
        return Batch(np.stack(crops), np.stack(cms), self.classes[list(indices)], np.stack(pts)[:, None])


def mirror_order(node_names: list[str], pairs: list[tuple[str, str]]) -> np.ndarray:
    """Node permutation of a mirrored animal: each node of a symmetric pair takes the
    other's place (SLEAP's skeleton symmetries; its flip augmentation does the same).

    Args:
        node_names: the skeleton's nodes, in order.
        pairs: symmetric node pairs by name, e.g. ``[("wingL", "wingR")]``.

    Returns:
        ``(nodes,)`` int array ``order``: mirrored points are ``points[order]``.

    Raises:
        RtposeError: a name that is not a node, or a node in two pairs.
    """
    order = np.arange(len(node_names))
    seen: set[str] = set()
    for a, b in pairs:
        for name in (a, b):
            if name not in node_names:
                raise RtposeError(f"data.symmetries: {name!r} is not a node of the skeleton ({', '.join(node_names)})")
            if name in seen or a == b:
                raise RtposeError(f"data.symmetries: {name!r} is in more than one pair")
            seen.add(name)
        i, j = node_names.index(a), node_names.index(b)
        order[i], order[j] = j, i
    return order


def suggest_crop_size(frames: list[FrameLabels], anchor_index: int, multiple: int) -> tuple[int, float]:
    """Smallest crop (a multiple of the max stride) holding every labeled node around its
    anchor, and the largest node distance seen."""
    radius = 0.0
    for f in frames:
        for pts, a in zip(f.points, frame_anchors(f, anchor_index)):
            d = np.linalg.norm(pts - a, axis=1)
            if np.isfinite(d).any():
                radius = max(radius, float(np.nanmax(d)))
    size = int(math.ceil(2 * (radius + 2) / multiple) * multiple)
    return size, radius


def fraction_outside_crop(frames: list[FrameLabels], anchor_index: int, crop_size: int) -> float:
    """Share of visible nodes farther from their anchor than the crop's half side."""
    total = outside = 0
    half = crop_size / 2
    for f in frames:
        for pts, a in zip(f.points, frame_anchors(f, anchor_index)):
            d = np.abs(pts - a).max(axis=1)
            vis = np.isfinite(d)
            total += int(vis.sum())
            outside += int((d[vis] >= half - 0.5).sum())
    return outside / max(total, 1)
