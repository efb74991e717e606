"""Parity of two engines on the same frames: the GPU engine against ONNX Runtime on the CPU.

For every frame both engines run, instances are paired by position (Hungarian on the mean
node distance), and the script reports the point deviation of paired instances (px), how
often both found the same number of instances, and how often paired instances got the same
identity. Issue 14's bar: points within 0.1 px for instances both find (FP16), same
identities. Exit status 1 when a bar is missed.

    python bench/gpu_parity.py -m models/flies13 -i $RTPOSE_DATA/flies13/clip.mp4 --frames 1200-1299
    python bench/gpu_parity.py ... --engine ort-cpu --precision fp32   # the logic, on any CPU (deviation 0)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtpose.data.video import VideoReader  # noqa: E402
from rtpose.engine.base import load_engine  # noqa: E402
from rtpose.machine import describe  # noqa: E402

MAX_DEVIATION_PX = 0.1


def pair_instances(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of instances ``a[i]``, ``b[j]`` (``(n, nodes, 2)`` px) by mean node distance."""
    if len(a) == 0 or len(b) == 0:
        return []
    dist = np.linalg.norm(a[:, None] - b[None], axis=-1)  # (na, nb, nodes)
    cost = np.nanmean(np.where(np.isfinite(dist), dist, np.nan), axis=-1)
    cost = np.where(np.isfinite(cost), cost, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


def main(argv: list[str] | None = None) -> int:
    """Run both engines over the frames and print the deviations; 0 when every bar holds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", required=True, help="export directory")
    p.add_argument("-i", "--input", required=True, help="video")
    p.add_argument("--frames", default="1200-1299", help="frames START-END, both included")
    p.add_argument("--engine", default="torch-cuda", help="the engine under test")
    p.add_argument("--precision", default="auto", help="its precision (torch-cuda's auto: FP16)")
    p.add_argument("--reference", default="ort-cpu", help="the reference engine")
    p.add_argument("--reference-precision", default="fp32",
                   help="graph of the reference (default fp32: the weights the GPU engine runs; ort-cpu's "
                        "auto may pick int8, which moves points by more than the bar)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    video = VideoReader(args.input)
    frames = [video.read(i) for i in video.select(args.frames)]
    test = load_engine(args.model, args.engine, args.precision)
    ref = load_engine(args.model, args.reference, args.reference_precision)
    deviations, same_count, id_pairs, id_same, both_empty = [], 0, 0, 0, 0
    for frame in frames:
        a, b = ref.infer(frame), test.infer(frame)
        same_count += int(len(a) == len(b))
        both_empty += int(len(a) == 0 and len(b) == 0)
        for i, j in pair_instances(a.points, b.points):
            d = np.linalg.norm(a.points[i] - b.points[j], axis=-1)
            found = np.isfinite(a.points[i, :, 0]) & np.isfinite(b.points[j, :, 0])
            deviations.append(d[found])
            id_pairs += 1
            id_same += int(a.identity[i] == b.identity[j])
    dev = np.concatenate(deviations) if deviations else np.zeros(0)
    result = {
        "engine": args.engine, "engine_device": test.device, "engine_graph": test.graph,
        "reference": args.reference, "reference_device": ref.device, "reference_graph": ref.graph, "frames": len(frames), "machine": describe(),
        "same_instance_count": same_count / max(len(frames), 1),
        "points_compared": int(dev.size),
        "deviation_px": {"median": float(np.median(dev)) if dev.size else None,
                         "p99": float(np.percentile(dev, 99)) if dev.size else None,
                         "max": float(dev.max()) if dev.size else None},
        "identity_agreement": id_same / id_pairs if id_pairs else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    ok = (dev.size > 0 and dev.max() <= MAX_DEVIATION_PX and result["same_instance_count"] == 1.0
          and result["identity_agreement"] == 1.0)
    print(f"parity {'holds' if ok else 'MISSED'}: max deviation {result['deviation_px']['max']} px "
          f"(bar {MAX_DEVIATION_PX}), same instance count on {same_count}/{len(frames)} frames, "
          f"identity agreement {result['identity_agreement']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
