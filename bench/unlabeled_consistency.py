"""Consistency of a model's poses and identities on frames nobody labelled.

    .venv/bin/python bench/unlabeled_consistency.py                         # models/flies13, frames 1200-1499
    .venv/bin/python bench/unlabeled_consistency.py -m EXPORT_DIR --frames 1000-1199
    .venv/bin/python bench/unlabeled_consistency.py -m OLD -m NEW --frames 1300-1499   # one after the other

Without labels nothing here is an accuracy; these are the symptoms of its failures:

- undecided frames: the identity head gives two animals the same most likely class, so
  the Hungarian assignment rests on tiny probability differences;
- identity swaps: frames where the anchors of the named animals sit nearer to the other
  animal's previous anchor than to their own (two per one-frame swap), with the head
  alone and with identity continuity (``rtpose/engine/continuity.py``);
- odd bodies: instances whose head-thorax distance is more than ``--tolerance-px`` from
  that animal's median over the run (a node put on the neighbour, usually);
- shared nodes: nodes of one animal within ``--shared-px`` of a node of the other (a
  node put on the neighbour usually lands on the neighbour's own node of that part);
- doubled nodes: two nodes of one animal within ``--shared-px`` of each other (two leg
  tips put on one leg; ``instance.distinct_nodes`` in a training config moves the weaker
  of such leg tips inside the graph), with the most frequent pairs by animal;
- node spikes: a node that leaves the midpoint of its own places in the frames before
  and after by more than ``--spike-px`` while those two agree within ``--spike-px``: at
  150 FPS a leg tip moves a few pixels between frames, so a one-frame jump that comes
  back is a node put elsewhere for one frame (on flies13's 1300-1499, leg tips trading
  names with another leg). Instability, not error: on the labelled 1200-1299 only 2 of
  the 62 nodes more than 8 px off were spikes (the others stay wrong for several frames);
- how close the animals come (anchor to anchor), which is what makes frames hard, and
  the odd bodies split by that distance (``rtpose.data.proximity``'s bins, in units of
  ``--animal-size`` px), so the weakness shows where it lies without any labels.

Prints the machine it ran on and the figures.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtpose.config import did_you_mean  # noqa: E402
from rtpose.data.proximity import PROXIMITY_BINS, proximity_bin  # noqa: E402
from rtpose.data.video import VideoReader, parse_frame_range  # noqa: E402
from rtpose.engine.base import load_engine  # noqa: E402
from rtpose.engine.continuity import IdentityContinuity  # noqa: E402
from rtpose.errors import RtposeError  # noqa: E402
from rtpose.machine import describe  # noqa: E402
from rtpose.paths import data_dir  # noqa: E402


def swaps(anchors: np.ndarray) -> int:
    """Frames where the two named animals are each nearer the other's previous anchor."""
    a, b = anchors[1:], anchors[:-1]
    same = np.linalg.norm(a[:, 0] - b[:, 0], axis=-1) + np.linalg.norm(a[:, 1] - b[:, 1], axis=-1)
    cross = np.linalg.norm(a[:, 0] - b[:, 1], axis=-1) + np.linalg.norm(a[:, 1] - b[:, 0], axis=-1)
    return int(np.sum(cross < same))


def spikes(points: np.ndarray, tolerance_px: float) -> np.ndarray:
    """``(frames, classes, nodes)`` bool: the node leaves the midpoint of its places in the
    frames before and after by more than ``tolerance_px``, while those two places agree
    within ``tolerance_px`` (NaN anywhere in the three frames: False). ``points`` is
    ``(frames, classes, nodes, 2)`` px, NaN where missing. First and last frames: False."""
    out = np.zeros(points.shape[:3], bool)
    before, now, after = points[:-2], points[1:-1], points[2:]
    with np.errstate(invalid="ignore"):
        off = np.linalg.norm(now - (before + after) / 2, axis=-1)
        steady = np.linalg.norm(after - before, axis=-1) <= tolerance_px
        out[1:-1] = (off > tolerance_px) & steady
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append",
                        help="export directory; give it again to check several, one after the other "
                             "(default: models/flies13)")
    parser.add_argument("-i", "--input", default=str(data_dir() / "flies13" / "clip.mp4"), help="video")
    parser.add_argument("--frames", default="1200-1499", help="frames START-END, both included")
    parser.add_argument("--anchor", default="thorax", help="anchor node (odd bodies, swaps, distances)")
    parser.add_argument("--head", default="head", help="node whose distance to the anchor makes a body")
    parser.add_argument("--tolerance-px", type=float, default=5.0,
                        help="odd body: head-anchor this far from the animal's median")
    parser.add_argument("--shared-px", type=float, default=2.0,
                        help="shared and doubled nodes: nodes this close")
    parser.add_argument("--spike-px", type=float, default=8.0, help="node spike: a one-frame jump this large")
    parser.add_argument("--animal-size", type=float, default=90.0,
                        help="unit of the distance bins, px (default: flies13's training labels' median)")
    args = parser.parse_args()
    try:
        for i, model in enumerate(args.model or [str(REPO / "models" / "flies13")]):
            if i:
                print()
            check(model, args)
    except RtposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def check(model: str, args: argparse.Namespace) -> None:
    """Run ``model`` over the frames and print every figure of the module docstring."""
    engine = load_engine(model, "ort-cpu")
    spec = engine.spec
    if spec.n_classes != 2:
        raise SystemExit("this check is written for two identities")
    for option, name in (("--anchor", args.anchor), ("--head", args.head)):
        if name not in spec.node_names:
            raise RtposeError(f"{option} {name!r} is not a node of {model}{did_you_mean(name, spec.node_names)}")
    anchor, head = spec.node_names.index(args.anchor), spec.node_names.index(args.head)
    follow = IdentityContinuity(spec.n_classes)
    undecided = 0
    by_head, by_continuity = [], []  # (frames, class, 2) anchors, NaN where missing
    lengths = []  # (frames, class) head-anchor distance
    shared = []  # (frames,) nodes of one animal on a node of the other
    doubled = []  # (frames,) pairs of nodes of one animal on one place
    doubled_kinds: Counter[str] = Counter()  # "female wingR-hindlegR4" -> frames
    tracks = []  # (frames, class, nodes, 2) points of the named animals, NaN where missing
    with VideoReader(args.input) as reader:
        for index in parse_frame_range(args.frames, reader.n_frames):
            poses = engine.infer(reader.read(index))
            best = poses.identity_scores.argmax(axis=1)
            undecided += int(len(poses) == 2 and best[0] == best[1])
            kept = follow(poses, index)
            for out, p in ((by_head, poses), (by_continuity, kept)):
                row = np.full((2, 2), np.nan)
                for i, cls in enumerate(p.identity):
                    if cls >= 0:
                        row[cls] = p.points[i, anchor]
                out.append(row)
            row = np.full(2, np.nan)
            for i, cls in enumerate(kept.identity):
                if cls >= 0:
                    row[cls] = np.linalg.norm(kept.points[i, head] - kept.points[i, anchor])
            lengths.append(row)
            named = np.full((2, len(spec.node_names), 2), np.nan)
            for i, cls in enumerate(kept.identity):
                if cls >= 0:
                    named[cls] = kept.points[i]
            tracks.append(named)
            pairs = 0
            for k, pts in enumerate(kept.points):
                d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
                close = np.argwhere(np.triu(d < args.shared_px, k=1))
                pairs += len(close)
                who = spec.class_names[kept.identity[k]] if kept.identity[k] >= 0 else "unnamed"
                for a, b in close:
                    doubled_kinds[f"{who} {spec.node_names[a]}-{spec.node_names[b]}"] += 1
            doubled.append(pairs)
            if len(kept) == 2:
                d = np.linalg.norm(kept.points[0][:, None] - kept.points[1][None], axis=-1)
                # fmin: a node one animal lacks gives an all-NaN row, which is no shared node (no warning)
                shared.append(int(np.sum(np.fmin.reduce(d, axis=1) < args.shared_px)
                                  + np.sum(np.fmin.reduce(d, axis=0) < args.shared_px)))
            else:
                shared.append(0)
    by_head, by_continuity, lengths = np.array(by_head), np.array(by_continuity), np.array(lengths)
    shared, doubled = np.array(shared), np.array(doubled)
    spiked = spikes(np.array(tracks), args.spike_px)
    n = len(by_head)
    odd = np.abs(lengths - np.nanmedian(lengths, axis=0)) > args.tolerance_px
    apart = np.linalg.norm(by_continuity[:, 0] - by_continuity[:, 1], axis=-1)

    info = describe()
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores, onnxruntime {info['onnxruntime']}")
    print(f"model {model}, frames {args.frames} ({n})")
    print(f"undecided frames (both animals most likely the same class): {undecided}")
    print(f"identity swaps in the anchor tracks: {swaps(by_head)} with the head alone, "
          f"{swaps(by_continuity)} with continuity ({follow.followed} frames followed by position)")
    print(f"odd bodies (head-{args.anchor} more than {args.tolerance_px:g} px off the animal's median): "
          f"{int(odd.sum())} of {int(np.isfinite(lengths).sum())} instances")
    print(f"shared nodes (within {args.shared_px:g} px of a node of the other animal): {int(shared.sum())} in "
          f"{int((shared > 0).sum())} frames")
    kinds = ", ".join(f"{kind} {count}" for kind, count in doubled_kinds.most_common(4))
    print(f"doubled nodes (two nodes of one animal within {args.shared_px:g} px): {int(doubled.sum())} pairs in "
          f"{int((doubled > 0).sum())} frames" + (f" ({kinds})" if kinds else ""))
    per_node = spiked.sum(axis=(0, 1))
    worst = ", ".join(f"{spec.node_names[k]} {per_node[k]}" for k in np.argsort(-per_node)[:4] if per_node[k])
    print(f"node spikes (one-frame jumps over {args.spike_px:g} px that come back): {int(spiked.sum())} in "
          f"{int(spiked.any(axis=(1, 2)).sum())} frames" + (f" ({worst})" if worst else ""))
    print(f"anchor to anchor: min {np.nanmin(apart):.1f} px, median {np.nanmedian(apart):.1f} px")
    bins = proximity_bin(np.where(np.isfinite(apart), apart, np.inf), args.animal_size)
    counted = np.isfinite(lengths)
    for name, _ in PROXIMITY_BINS:
        rows = bins == name
        n = int(counted[rows].sum())
        print(f"  {name:9s} {int(rows.sum()):4d} frames: odd bodies {int(odd[rows].sum())} of {n} instances"
              + (f" ({100 * odd[rows].sum() / n:.1f}%)" if n else "") + f", shared nodes {int(shared[rows].sum())}, doubled {int(doubled[rows].sum())}, "
              f"node spikes {int(spiked[rows].sum())}")


if __name__ == "__main__":
    raise SystemExit(main())
