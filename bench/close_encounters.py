"""How a model does where the animals touch: every figure of issue 10 on labelled blocks.

    .venv/bin/python bench/close_encounters.py -m models/flies13 [-m OTHER_EXPORT ...]
    .venv/bin/python bench/close_encounters.py -m EXPORT --block close=clip.close.slp:1270-1299

For each model (an export dir) and each block of labelled frames (default: the
validation block 1150-1199 of ``clip.trainval.slp`` and the last 30 frames, 1270-1299,
of ``clip.close.slp``, which the shipped config holds out), it predicts as ``rtpose
predict --only-labeled`` does (ort-cpu, identity continuity on) and prints:

- OKS mAP, instances found (OKS > 0.5), identity accuracy of those found, node error
  p50 / p95 (``rtpose eval``), overall and per inter-animal distance bin
  (``rtpose.data.proximity``: thorax to thorax, in units of ``--animal-size`` px);
- the agreement of the male-approach rule of ``experiments/male_approach_replay.yaml``
  evaluated offline on the predicted poses with the same rule on the labels (frame by
  frame, at the clip's 150 FPS), as ``bench/rule_agreement_gt.py`` does live.

Prints the machine it ran on. ``--json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtpose.data.labels import class_names, load_labels, node_names  # noqa: E402
from rtpose.engine.predict import predict  # noqa: E402
from rtpose.eval.evaluate import evaluate  # noqa: E402
from rtpose import jsonsafe  # noqa: E402
from rtpose.live.protocol import load_protocol  # noqa: E402
from rtpose.machine import describe  # noqa: E402
from rtpose.paths import data_dir  # noqa: E402
from rtpose.poses import Poses  # noqa: E402
from rtpose.rules import evaluate_offline  # noqa: E402

FPS = 150.0  # the clip's camera rate


def frame_poses(path: Path, frames: range, classes: list[str], nodes: list[str]) -> dict[int, Poses]:
    """Poses per frame index from a labels or predictions .slp (identity = track)."""
    labels = load_labels(path, open_videos=False)
    index = {n: i for i, n in enumerate(classes)}
    order = [node_names(labels).index(n) for n in nodes]
    out = {}
    for lf in labels.labeled_frames:
        if lf.frame_idx not in frames:
            continue
        insts = lf.user_instances or lf.predicted_instances
        pts = np.stack([i.numpy()[order] for i in insts]).astype(np.float32) if insts else \
            np.zeros((0, len(nodes), 2), np.float32)
        ids = np.array([index.get(i.track.name, -1) if i.track else -1 for i in insts], np.int32)
        onehot = np.eye(len(classes), dtype=np.float32)[np.maximum(ids, 0)] if len(ids) else \
            np.zeros((0, len(classes)), np.float32)
        out[int(lf.frame_idx)] = Poses(pts, np.ones(pts.shape[:2], np.float32), np.ones(len(pts), np.float32),
                                       ids, onehot)
    return out


def rule_states(protocol, nodes, classes, poses: dict[int, Poses]) -> dict[str, dict[int, bool]]:
    """Rule states per frame, evaluated offline over the frames in index order."""
    idx = sorted(poses)
    ev = evaluate_offline(protocol.protocol, nodes, classes, protocol.protocol.arena.px_per_mm,
                          [poses[i] for i in idx], [i / FPS for i in idx])
    return {name: dict(zip(idx, map(bool, states))) for name, states in ev.rules.items()}


def parse_block(text: str) -> tuple[str, Path, range]:
    name, rest = text.split("=", 1)
    file, span = rest.rsplit(":", 1)
    a, b = (int(x) for x in span.split("-"))
    path = Path(file) if Path(file).is_absolute() else data_dir() / "flies13" / file
    return name, path, range(a, b + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="export dir (repeatable; default models/flies13)")
    parser.add_argument("--block", action="append", metavar="NAME=FILE.slp:A-B",
                        help="labelled block (repeatable); FILE relative to $RTPOSE_DATA/flies13")
    parser.add_argument("--protocol", default=str(REPO / "experiments" / "male_approach_replay.yaml"))
    parser.add_argument("--anchor-part", default="thorax")
    parser.add_argument("--animal-size", type=float, default=90.0,
                        help="unit of the distance bins, px (default: the flies13 training labels' median)")
    parser.add_argument("--px-per-mm", type=float, default=30.3)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    models = args.model or [str(REPO / "models" / "flies13")]
    blocks = [parse_block(b) for b in (args.block or ["validation=clip.trainval.slp:1150-1199",
                                                        "close=clip.close.slp:1270-1299"])]
    protocol = load_protocol(args.protocol)
    info = describe()
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores, onnxruntime {info['onnxruntime']}")
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="rtpose-close-"))
    for name, path, frames in blocks:
        labels = load_labels(path, open_videos=False)
        nodes, classes = node_names(labels), class_names(labels)
        truth = rule_states(protocol, nodes, classes, frame_poses(path, frames, classes, nodes))
        for m in models:
            out = tmp / f"{abs(hash((m, name)))}.slp"
            predict(m, path, frames=f"{frames.start}-{frames.stop - 1}", output=out, only_labeled=True,
                    progress=False)
            ev = evaluate(path, out, frames=frames, px_per_mm=args.px_per_mm, anchor_part=args.anchor_part,
                          animal_size_px=args.animal_size)
            live = rule_states(protocol, nodes, classes, frame_poses(out, frames, classes, nodes))
            agree = {r: float(np.mean([live[r].get(i, False) == t for i, t in truth[r].items()])) for r in truth}
            on = {r: (sum(truth[r].values()), sum(live[r].get(i, False) for i in truth[r])) for r in truth}
            results[f"{m} | {name}"] = {**ev, "rule_agreement": agree, "rule_true_gt_pred": on}
            d = ev["dist_px"]
            print(f"{name} ({path.name} {frames.start}-{frames.stop - 1}) {m}: mAP {ev['map']:.3f}, "
                  f"found {ev['n_found']}/{ev['n_gt']} ({100 * ev['found']:.1f}%), "
                  f"identity {100 * ev['id_accuracy']:.1f}%, error p50/p95 {d['p50']:.2f}/{d['p95']:.2f} px, "
                  + ", ".join(f"rule {r} agrees {100 * a:.1f}% (true on {on[r][0]} labelled / {on[r][1]} predicted)"
                              for r, a in agree.items()))
            for b, f in ev["by_proximity"].items():
                if f["n_gt"]:
                    print(f"    {b:9s} {f['n_gt']:4d} instances: mAP {f['map']:.3f}, found {100 * f['found']:.1f}%, "
                          f"identity {100 * f['id_accuracy']:.1f}%, error p50/p95 {f['dist_px']['p50']:.2f}/"
                          f"{f['dist_px']['p95']:.2f} px")
    if args.json_out:
        Path(args.json_out).write_text(jsonsafe.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
