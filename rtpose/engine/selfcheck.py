"""Self-checking exports: reference frames, the fp32 graph's outputs on them, and the check.

An exported graph must mean the same thing on every machine. The exporter stores a few
real frames of the training video in ``reference.npz`` together with the raw outputs of
the fp32 graph on them (computed at export time). Every engine load runs its graph on
those frames and compares, instances paired by position (Hungarian, as in
rtpose.export.quantize):

- the number of instances found on each frame must be the same;
- every paired instance must get the same identity (one per class, rtpose.engine.base);
- the points of the nodes the reference found (score >= ``point_threshold``) may move at
  most ``Bounds.median_px`` (median over all such nodes), ``Bounds.p90_px`` (90th
  percentile) and ``Bounds.max_px`` (any one).

The bounds depend on what the graph's arithmetic is allowed to change. An fp32 graph on
another CPU differs only by the order of float additions (measured: 0.000 px between
AVX-512 and emulated AVX2): it gets tight bounds, any point included. int8 and FP16
graphs move points by rounding: their bounds are the int8 export's own (0.5 px median)
and 1.5 px at the 90th percentile, and no bound on the single worst point, because a
node whose confidence map has two near-equal peaks (a leg tip beside another leg) may
legitimately flip between them (measured on flies13: one leg tip moved 32 px under int8
with identical integer results on both CPUs). What saturated integer sums do is
different in kind: on the flies13 references, full-range int8 weights on an AVX2 CPU
without VNNI moved the median point 0.61-0.68 px and the 90th percentile 1.7-1.9 px, with
30% of points moved more than 1 px (against 5% with VNNI): refused.

To keep the references small (tens of kB, not 200 kB per frame) each stored frame is a
real frame in which only the pixels near the animals are kept: a square of 1.5 times the
crop size around each instance's anchor, the rest filled with the frame's median grey. The references are the fp32 outputs on exactly these stored frames, so the check
compares like with like; the kept squares cover everything the centered-instance
network reads.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Callable

import attrs
import numpy as np
from scipy.optimize import linear_sum_assignment

from rtpose.engine.identities import assign_identities
from rtpose.errors import RtposeError
from rtpose.export.spec import OUTPUT_NAMES, REFERENCE_FILE, ExportSpec


@attrs.frozen
class Bounds:
    """How far a graph may move the reference points (px, full-frame pixels)."""

    median_px: float
    p90_px: float
    max_px: float = float("inf")

    def text(self) -> str:
        worst = ("none: under rounding one point may flip between two near-equal peaks"
                 if self.max_px == float("inf") else f"{self.max_px:g}")
        return f"{self.median_px:g} / {self.p90_px:g} / {worst}"


FP32_BOUNDS = Bounds(median_px=0.05, p90_px=0.1, max_px=0.5)  # same graph, other float kernels
REDUCED_BOUNDS = Bounds(median_px=0.5, p90_px=1.5)  # int8 or FP16 arithmetic; rtpose.export.quantize

RawOutputs = dict[str, np.ndarray]
LOST_PX = 1e6  # the deviation of a point the reference has and the graph returns as NaN


@attrs.frozen
class References:
    """Reference frames ``(n, H, W)`` uint8, the video frame they came from, and the fp32
    graph's raw outputs on them (``OUTPUT_NAMES``, each with a leading frame axis)."""

    frames: np.ndarray
    frame_indices: np.ndarray
    outputs: RawOutputs


@attrs.frozen
class CheckResult:
    """The outcome of running one graph on the references."""

    graph: str  # what ran: "fp32", "int8", "fp16"
    frames: int
    median_px: float
    p90_px: float
    max_px: float
    frames_same_count: int  # frames where the graph finds as many instances as the reference
    ids_same: int  # paired instances with the reference's identity
    ids_total: int
    bounds: Bounds
    seconds: float

    @property
    def failures(self) -> list[str]:
        out = []
        if self.frames_same_count < self.frames:
            out.append(f"instance count differs on {self.frames - self.frames_same_count} of {self.frames} frames")
        if self.ids_same < self.ids_total:
            out.append(f"{self.ids_total - self.ids_same} of {self.ids_total} identities differ")
        if self.median_px > self.bounds.median_px:
            out.append(f"points moved {self.median_px:.3f} px median (bound {self.bounds.median_px:g})")
        if self.p90_px > self.bounds.p90_px:
            out.append(f"points moved {self.p90_px:.2f} px at the 90th percentile (bound {self.bounds.p90_px:g})")
        if self.max_px > self.bounds.max_px:
            out.append(f"a point moved {self.max_px:.2f} px (bound {self.bounds.max_px:g})")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line: the deviation from the references and the bounds."""
        return (f"{self.graph} graph vs the fp32 references on {self.frames} frame{'' if self.frames == 1 else 's'}: points moved {self.median_px:.3f} "
                f"median / {self.p90_px:.3f} p90 / {self.max_px:.2f} max px (bounds {self.bounds.text()}), "
                f"instance count same on {self.frames_same_count}/{self.frames} frames, identities same "
                f"{self.ids_same}/{self.ids_total}")

    def to_dict(self) -> dict:
        d = attrs.asdict(self)
        d["passed"] = self.passed
        return d


def match_instances(points_a: np.ndarray, points_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair two sets of instances ``(na, nodes, 2)`` and ``(nb, nodes, 2)`` by position.

    Returns ``(rows, cols, dist)``: paired indices into a and b, and ``dist (na, nb, nodes)``
    the node distances (NaN where a node is missing). Pairing minimises the mean distance of
    the nodes both have (Hungarian), not slot order: two animals with nearly equal centroid
    scores may leave top-k in either order.
    """
    if len(points_a) == 0 or len(points_b) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((len(points_a), len(points_b), points_a.shape[1]))
    dist = np.linalg.norm(points_a[:, None] - points_b[None], axis=-1)
    found = np.isfinite(dist)
    n_found = found.sum(axis=-1)
    cost = np.where(n_found > 0, np.where(found, dist, 0).sum(axis=-1) / np.maximum(n_found, 1), 1e6)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols, dist


def compare(got: list[RawOutputs], refs: References, spec: ExportSpec, bounds: Bounds, graph: str,
            seconds: float = 0.0) -> CheckResult:
    """Compare a graph's raw outputs on the reference frames (one batch-1 dict per frame)."""
    shifts, same_count, ids_same, ids_total = [], 0, 0, 0
    for i, raw in enumerate(got):
        ref_valid = refs.outputs["valid"][i].astype(bool)
        got_valid = raw["valid"][0].astype(bool)
        same_count += int(ref_valid.sum() == got_valid.sum())
        ref_points = refs.outputs["points"][i][ref_valid]
        ref_found = refs.outputs["point_scores"][i][ref_valid] >= spec.point_threshold
        rows, cols, dist = match_instances(ref_points, raw["points"][0][got_valid])
        for r, c in zip(rows, cols):
            shifts.append(dist[r, c][ref_found[r]])
        ref_ids = assign_identities(refs.outputs["class_probs"][i][ref_valid])
        got_ids = assign_identities(raw["class_probs"][0][got_valid])
        ids_total += int(ref_valid.sum())
        ids_same += int(sum(ref_ids[r] == got_ids[c] for r, c in zip(rows, cols)))
    d = np.concatenate(shifts) if shifts else np.zeros(0)
    d = np.where(np.isfinite(d), d, LOST_PX)  # a point the graph lost counts as moved very far
    q = (lambda p: float(np.percentile(d, p))) if d.size else (lambda p: 0.0)
    return CheckResult(graph=graph, frames=len(got), median_px=q(50), p90_px=q(90), max_px=q(100),
                       frames_same_count=same_count, ids_same=ids_same, ids_total=ids_total, bounds=bounds,
                       seconds=seconds)


def run_check(run_raw: Callable[[np.ndarray], RawOutputs], refs: References, spec: ExportSpec, bounds: Bounds,
              graph: str) -> CheckResult:
    """Run ``run_raw`` (a ``(1, 1, H, W)`` uint8 batch -> raw outputs) on every reference frame."""
    t0 = time.perf_counter()
    got = [run_raw(np.ascontiguousarray(frame[None, None])) for frame in refs.frames]
    return compare(got, refs, spec, bounds, graph, time.perf_counter() - t0)


def load_references(export_dir: str | Path, spec: ExportSpec) -> References | None:
    """The export's references, or None for an export made before they existed."""
    path = Path(export_dir) / REFERENCE_FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            frames = data["frames"]
            outputs = {name: data[name] for name in OUTPUT_NAMES}
            indices = data["frame_indices"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RtposeError(f"{path}: not readable reference outputs ({exc}); a damaged or truncated copy? copy the "
                          "export again, or export it again") from None
    if frames.dtype != np.uint8 or frames.shape[1:] != (spec.frame_height, spec.frame_width):
        raise RtposeError(f"{path}: frames of shape {frames.shape[1:]} do not match rtpose.json's "
                          f"{spec.frame_height}x{spec.frame_width}; re-export the model")
    return References(frames=frames, frame_indices=indices, outputs=outputs)


def keep_near_animals(frame: np.ndarray, anchors: np.ndarray, half_size: int) -> np.ndarray:
    """``frame`` with only the squares of side ``2 * half_size`` around ``anchors (n, 2)`` (x, y)
    kept, everything else set to the frame's median grey."""
    out = np.full_like(frame, int(np.median(frame)))
    h, w = frame.shape
    for x, y in anchors:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        x0, y0 = max(int(round(x)) - half_size, 0), max(int(round(y)) - half_size, 0)
        x1, y1 = min(int(round(x)) + half_size, w), min(int(round(y)) + half_size, h)
        out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
    return out


def make_references(run_raw: Callable[[np.ndarray], RawOutputs], frames: list[np.ndarray],
                    frame_indices: list[int], spec: ExportSpec) -> References:
    """References from the fp32 graph's ``run_raw`` on real ``frames (H, W)`` uint8.

    Each frame keeps its pixels near the animals the graph finds on it (see the module
    docstring); a frame where the kept pixels alone do not give the same instances is
    stored whole.
    """
    anchor = spec.node_names.index(spec.anchor_part) if spec.anchor_part in spec.node_names else None
    kept, outputs = [], {name: [] for name in OUTPUT_NAMES}
    for frame in frames:
        full = run_raw(np.ascontiguousarray(frame[None, None]))
        stored = frame
        valid = full["valid"][0].astype(bool)
        if anchor is not None and valid.any():
            points = full["points"][0][valid]
            centres = points[:, anchor]
            centres = np.where(np.isfinite(centres), centres, np.nanmean(points, axis=1))
            masked = keep_near_animals(frame, centres, spec.crop_size * 3 // 4)
            raw = run_raw(np.ascontiguousarray(masked[None, None]))
            if raw["valid"][0].sum() == valid.sum():
                stored, full = masked, raw
        kept.append(stored)
        for name in OUTPUT_NAMES:
            outputs[name].append(full[name][0])
    return References(frames=np.stack(kept), frame_indices=np.asarray(frame_indices, np.int64),
                      outputs={k: np.stack(v) for k, v in outputs.items()})


def describe_references(spec: ExportSpec) -> str:
    """What an export's reference frames are, in words (``extra.references``): the
    description the exporter recorded, else the video frame indices it stored (an
    index of -1 is a frame without one: an older export's check frame or blank frame)."""
    refs = spec.extra.get("references", {})
    if refs.get("description"):
        return str(refs["description"])
    indices = refs.get("video_frames")
    if not indices:
        return "no recorded frames"
    if all(i >= 0 for i in indices):
        return f"video frame{'s' if len(indices) > 1 else ''} {', '.join(str(i) for i in indices)}"
    return "one frame without a recorded index (the export's check frame, or a blank frame)"


def save_references(refs: References, export_dir: str | Path) -> Path:
    path = Path(export_dir) / REFERENCE_FILE
    np.savez_compressed(path, frames=refs.frames, frame_indices=refs.frame_indices, **refs.outputs)
    return path


def refusal(export_dir: str | Path, engine: str, result: CheckResult, fix: str) -> RtposeError:
    """The one-line error for a graph that does not reproduce its references here."""
    return RtposeError(f"{export_dir}: the {result.graph} graph on {engine} fails its self-check on this machine: "
                       f"{'; '.join(result.failures)} ({result.frames} reference frames); {fix}")
