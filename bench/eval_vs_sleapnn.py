"""Cross-check ``rtpose eval`` against sleap-nn's evaluator on the fly labels.

sleap-nn 0.3.x's ``sleap_nn.evaluation.Evaluator`` is the reference implementation of
the SLEAP paper's OKS mAP procedure; ``rtpose eval`` must agree with it to 0.005 mAP.
sleap-nn is never a dependency of rtpose: it lives in a side virtualenv and runs here
in a subprocess (``--sleapnn-python``, default ``$SLEAPNN_PYTHON`` or
/tmp/rtpose-peer-env/bin/python).

Prediction sets, all written with rtpose's own .slp writer:

- ``peer*``: real predictions of the peer sleap-nn top-down ID model
  (/work/shared/peer) on frames 1100-1199, made here with sleap-nn's predictor unless
  the files are already in ``--out``. That model is poorly trained: with the default
  peak threshold it finds few nodes (mAP 0), with threshold 0 every node is placed,
  badly. ``peer-filled`` keeps the model's nodes, instance scores and identities and
  fills the nodes it did not find from the labels plus noise, which spreads OKS over
  the thresholds with real scores ordering the detections. Variants drop instances,
  add extras, swap identities and blank nodes.
- ``gt-*``: the labels perturbed with known noise (per-instance sigma), random or
  tied scores, missed and extra instances, swapped identities, missing nodes.
- ``degenerate``: labels where some instances keep one or two visible nodes (zero
  bounding-box area; OKS is replaced by a distance score in both implementations).

Every set is scored with rtpose's defaults against the whole labels file (1200
frames), so the predictions cover only some labeled frames; like sleap-nn, rtpose
leaves the others out by default. ``peer-filled omitted frames`` drops 5 of the 100
predicted frames to show that too. (``--unpredicted-frames missed`` would count them as
missed and differ from sleap-nn by design.)

Usage (from the repo root, in the project venv):

    .venv/bin/python bench/eval_vs_sleapnn.py [--out /tmp/rtpose-eval-bench] [--sleapnn-python PY]

Prints ours, sleap-nn's and the difference for mAP, mAR, mOKS, distance percentiles
and PCK (sleap-nn's PCK counts unlabeled nodes as wrong; it is rescaled to ours), and
exits 1 if any mAP differs by more than 0.005.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import sleap_io as sio

from rtpose.data.predictions import read_predictions, write_predictions
from rtpose.eval.evaluate import evaluate
from rtpose.paths import data_dir
from rtpose.poses import Poses

MAP_TOLERANCE = 0.005
PEER = Path("/work/shared/peer")
PEER_FRAMES = range(1100, 1200)

SLEAPNN_SCRIPT = r"""
import json, sys, warnings
import numpy as np, sleap_io as sio
from sleap_nn.evaluation import Evaluator
warnings.filterwarnings("ignore")
for line in sys.stdin:
    gt_path, pred_path = json.loads(line)
    ev = Evaluator(sio.load_slp(gt_path, open_videos=False), sio.load_slp(pred_path, open_videos=False))
    m = ev.evaluate()
    d = m["distance_metrics"]
    dists = np.asarray(ev.dists_dict["dists"])
    gt_visible = sum(int((~np.isnan(g.instance.numpy()).any(-1)).sum()) for g, _, _ in ev.positive_pairs)
    out = {"map": m["voc_metrics"]["oks_voc.mAP"], "mar": m["voc_metrics"]["oks_voc.mAR"],
           "moks": m["mOKS"]["mOKS"], "n_matched": len(ev.positive_pairs),
           "n_gt": len(ev.positive_pairs) + len(ev.false_negatives),
           "pck": m["pck_metrics"]["PCK@5"] * dists.size / gt_visible if gt_visible else None,
           **{k: d[k] for k in ("p50", "p75", "p90", "p95", "p99")}}
    print(json.dumps({k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}), flush=True)
"""

PREDICT_SCRIPT = r"""
import sys
import sleap_io as sio
from sleap_nn.inference import Predictor
centroid, instance, video, start, end, out, peak_instance = sys.argv[1:8]
predictor = Predictor.from_model_paths([centroid, instance], device="cpu", batch_size=4,
                                       peak_threshold=[0.2, float(peak_instance)])
labels = predictor.predict(sio.load_video(video), frames=list(range(int(start), int(end) + 1)))
sio.save_slp(labels, out)
"""

FIGURES = ("map", "mar", "moks", "p50", "p95", "p99", "pck")


def gt_arrays(labels: sio.Labels) -> dict[int, tuple[np.ndarray, list[str]]]:
    """Frame index -> (points (n, nodes, 2), track names) of the user instances."""
    out = {}
    for lf in labels.labeled_frames:
        if lf.user_instances:
            out[int(lf.frame_idx)] = (np.stack([i.numpy() for i in lf.user_instances]).astype(np.float32),
                                      [i.track.name for i in lf.user_instances])
    return out


def poses(points: np.ndarray, scores: np.ndarray, identity: np.ndarray, n_classes: int) -> Poses:
    n, nodes = points.shape[:2]
    ident = np.asarray(identity, np.int32)
    id_scores = np.zeros((n, n_classes), np.float32)
    id_scores[ident >= 0, ident[ident >= 0]] = 1.0
    return Poses(points.astype(np.float32), np.ones((n, nodes), np.float32),
                 np.asarray(scores, np.float32), ident, id_scores)


def perturbed_gt(truth, classes, rng, frames, sigma=(0.1, 3.0), tied=False, drop=0.0, extra=0.0,
                 swap=None, blank=0.0) -> list[tuple[int, Poses]]:
    """The labels with per-instance Gaussian noise and the requested mistakes."""
    out = []
    for f in frames:
        pts, names = truth[f]
        n = len(pts)
        s = rng.uniform(*sigma, size=(n, 1, 1))
        p = pts + rng.normal(size=pts.shape) * s
        ident = np.array([classes.index(t) for t in names])
        if swap is not None and swap[0] <= f <= swap[1]:
            ident = ident[::-1].copy()
        score = np.ones(n) if tied else rng.uniform(0.2, 1.0, n)
        keep = rng.uniform(size=n) >= drop
        p, ident, score = p[keep], ident[keep], score[keep]
        if blank:
            p[rng.uniform(size=p.shape[:2]) < blank] = np.nan
        if extra and rng.uniform() < extra and len(pts):
            dup = pts[rng.integers(len(pts))] + rng.normal(size=pts.shape[1:]) * 8 + rng.normal(size=2) * 15
            p = np.concatenate([p, dup[None]])
            ident = np.append(ident, -1)
            score = np.append(score, 1.0 if tied else rng.uniform(0.1, 1.0))
        out.append((f, poses(p, score, ident, len(classes))))
    return out


def filled_peer(peer_frames, truth, classes, rng, noise=1.5, drop=0.0, extra=0.0, swap=None, blank=0.0):
    """Peer predictions with the nodes the model did not find filled from the labels + noise."""
    out = []
    for f, ps in peer_frames:
        pts, names = truth[f]
        p = ps.points.copy()
        ident = ps.identity.copy()
        score = ps.instance_scores.copy()
        for row in range(len(ps)):
            if 0 <= ident[row] < len(classes) and classes[ident[row]] in names:
                gt = pts[names.index(classes[ident[row]])]
                missing = np.isnan(p[row]).any(-1)
                p[row, missing] = gt[missing] + rng.normal(size=(int(missing.sum()), 2)) * noise * rng.uniform(0.3, 2)
        if swap is not None and swap[0] <= f <= swap[1]:
            ident = np.where(ident >= 0, len(classes) - 1 - ident, ident)
        keep = rng.uniform(size=len(p)) >= drop
        p, ident, score = p[keep], ident[keep], score[keep]
        if blank:
            p[rng.uniform(size=p.shape[:2]) < blank] = np.nan
        if extra and rng.uniform() < extra and len(pts):
            dup = pts[rng.integers(len(pts))] + rng.normal(size=pts.shape[1:]) * 10
            p = np.concatenate([p, dup[None]])
            ident = np.append(ident, -1)
            score = np.append(score, rng.uniform(0.1, 1.0))
        out.append((f, poses(p, score, ident, len(classes))))
    return out


def degenerate_gt(gt_path: Path, out: Path, rng) -> Path:
    """Labels where every 5th instance keeps one or two visible nodes (zero-area bbox)."""
    labels = sio.load_slp(str(gt_path), open_videos=False)
    k = 0
    for lf in labels.labeled_frames:
        for inst in lf.user_instances:
            k += 1
            if k % 5:
                continue
            pts = inst.numpy()
            keep = rng.choice(len(pts), size=1 + (k % 10 == 0), replace=False)
            new = np.full_like(pts, np.nan)
            new[keep] = pts[keep]
            if len(keep) == 2:
                new[keep[1], 1] = new[keep[0], 1]  # same row: a zero-height box
            inst.points["xy"] = new
            inst.points["visible"] = ~np.isnan(new).any(-1)
    sio.save_slp(labels, str(out), verbose=False)
    return out


def run_sleapnn(python: str, pairs: list[tuple[Path, Path]]) -> list[dict]:
    """sleap-nn's figures for each (labels, predictions) pair, in one subprocess."""
    stdin = "".join(json.dumps([str(g), str(p)]) + "\n" for g, p in pairs)
    done = subprocess.run([python, "-c", SLEAPNN_SCRIPT], input=stdin, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"sleap-nn evaluation failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def peer_predictions(python: str, out_dir: Path, video: Path, peak_instance: float) -> Path:
    path = out_dir / f"peer_{PEER_FRAMES.start}_{PEER_FRAMES.stop - 1}_peak{peak_instance:g}.slp"
    if not path.exists():
        print(f"running the peer model on frames {PEER_FRAMES.start}-{PEER_FRAMES.stop - 1} -> {path}", flush=True)
        subprocess.run([python, "-c", PREDICT_SCRIPT, str(PEER / "centroid"), str(PEER / "centered_instance_id"),
                        str(video), str(PEER_FRAMES.start), str(PEER_FRAMES.stop - 1), str(path),
                        str(peak_instance)], check=True, capture_output=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/rtpose-eval-bench", help="where prediction sets are written")
    parser.add_argument("--sleapnn-python", default=os.environ.get("SLEAPNN_PYTHON", "/tmp/rtpose-peer-env/bin/python"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    gt_path = data_dir() / "flies13" / "clip.trainval.slp"
    video = data_dir() / "flies13" / "clip.mp4"
    labels = sio.load_slp(str(gt_path), open_videos=False)
    classes = [t.name for t in labels.tracks]
    nodes = [n.name for n in labels.skeletons[0].nodes]
    edges = [(nodes.index(e.source.name), nodes.index(e.destination.name)) for e in labels.skeletons[0].edges]
    truth = gt_arrays(labels)
    rng = np.random.default_rng(args.seed)
    all_frames = sorted(truth)
    some = all_frames[::3]

    def write(name: str, frames) -> Path:
        return write_predictions(out_dir / f"{name}.slp", video, nodes, edges, classes, frames)

    sets: list[tuple[str, Path, Path]] = []  # (name, predictions, labels)
    for peak in (0.2, 0.0):
        raw = peer_predictions(args.sleapnn_python, out_dir, video, peak)
        sets.append((f"peer peak {peak:g}", raw, gt_path))
    raw = read_predictions(out_dir / f"peer_{PEER_FRAMES.start}_{PEER_FRAMES.stop - 1}_peak0.2.slp")
    peer = [(f, p) for _, f, p in raw.frames]
    for name, kw in [("peer-filled", {}), ("peer-filled noisy", {"noise": 4.0}),
                     ("peer-filled drop+extra", {"drop": 0.15, "extra": 0.3}),
                     ("peer-filled swap+blank", {"swap": (1130, 1160), "blank": 0.1})]:
        sets.append((name, write(name.replace(" ", "_"), filled_peer(peer, truth, classes, rng, **kw)), gt_path))
    filled = filled_peer(peer, truth, classes, rng)
    sets.append(("peer-filled omitted frames", write("peer_filled_omitted", [(f, p) for f, p in filled if f % 20]),
                 gt_path))
    for name, frames, kw in [
        ("gt-jitter", some, {}),
        ("gt-jitter tied scores", some, {"tied": True}),
        ("gt-jitter wide", some, {"sigma": (0.5, 10.0)}),
        ("gt-missed", some, {"drop": 0.2}),
        ("gt-extra", some, {"extra": 0.5}),
        ("gt-extra tied", some, {"extra": 0.5, "tied": True}),
        ("gt-swap", all_frames[:300], {"swap": (100, 180)}),
        ("gt-missing nodes", some, {"blank": 0.25}),
        ("gt-everything", all_frames, {"drop": 0.1, "extra": 0.2, "swap": (500, 600), "blank": 0.1,
                                        "sigma": (0.1, 6.0)}),
    ]:
        sets.append((name, write(name.replace(" ", "_"), perturbed_gt(truth, classes, rng, frames, **kw)), gt_path))
    degenerate = degenerate_gt(gt_path, out_dir / "gt_degenerate.slp", rng)
    sets.append(("degenerate labels", write("degenerate_pred", perturbed_gt(truth, classes, rng, some)), degenerate))

    t = time.perf_counter()
    ours = [evaluate(g, p) for _, p, g in sets]
    ours_s = time.perf_counter() - t
    ref = run_sleapnn(args.sleapnn_python, [(g, p) for _, p, g in sets])

    def val(d, k):
        v = d["dist_px"][k] if "dist_px" in d and k.startswith("p") and k != "pck" else d.get(k)
        return float("nan") if v is None else v

    print(f"{'set':26s} {'figure':5s} {'rtpose':>10s} {'sleap-nn':>10s} {'diff':>10s}")
    worst = 0.0
    for (name, *_), o, r in zip(sets, ours, ref):
        print(f"{name:26s} n_gt {o['n_gt']} vs {r['n_gt']:.0f}, matched {o['n_matched']} vs {r['n_matched']:.0f}")
        for k in FIGURES:
            a, b = val(o, k), val(r, k)
            diff = a - b if np.isfinite(a) and np.isfinite(b) else (0.0 if np.isnan(a) and np.isnan(b) else np.nan)
            print(f"{'':26s} {k:5s} {a:10.6f} {b:10.6f} {diff:10.2e}")
        worst = max(worst, abs(val(o, "map") - val(r, "map")))
    print(f"largest mAP difference: {worst:.2e} over {len(sets)} sets (tolerance {MAP_TOLERANCE}); "
          f"rtpose took {ours_s:.2f} s for all sets")
    return 0 if worst <= MAP_TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
