"""Frames per second of ``rtpose predict`` on Ray for 1, 2 and N workers, against one process.

    python bench/fleet_scaling.py                        # 4 copies x frames 0-199, workers 1, 2, N
    python bench/fleet_scaling.py --copies 8 --frames 0-499 --workers 1 2 4 --repeats 2

Copies the fly clip ``--copies`` times into a scratch folder (Ray dedups by path, and a
real experiment is many files), then, in this order and ``--repeats`` times over:

- ``single``: today's ``rtpose predict`` (one process, all cores), one copy after the
  other as a shell loop would run them; wall time includes each engine load.
- ``ray xW``: one fleet run over all copies with W workers (threads per worker as the
  fleet sizes them), on one local Ray started once here, so Ray's own start-up (seconds)
  is reported apart. ``wall`` includes creating the workers and loading their engines;
  ``loop`` is the dispatch loop alone (the run's ``seconds`` in the manifest). Each
  fleet output is compared with the single-process one, frame by frame (chunk borders
  inside the H.264 clip: seeks to them must land on the right frame).

Prints the machine (CPU, flags, cores, load average before and after) and a table, and
writes it as JSON with ``--json``. On a machine others are using, compare the rows of one
run with each other, not with figures taken at another time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rtpose.data.predictions import read_predictions
from rtpose.engine.predict import predict
from rtpose.machine import describe
from rtpose.paths import REPO_ROOT, data_dir

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return [f for f in FLAGS if re.search(rf"\b{f}\b", text)]


def same_poses(a: Path, b: Path) -> bool:
    """Whether two predictions files hold the same frames, points, scores and identities."""
    fa, fb = read_predictions(a).frames, read_predictions(b).frames
    return [f for _, f, _ in fa] == [f for _, f, _ in fb] and all(
        np.array_equal(x.points, y.points, equal_nan=True) and np.array_equal(x.identity, y.identity)
        and np.array_equal(x.point_scores, y.point_scores) for (_, _, x), (_, _, y) in zip(fa, fb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=str(REPO_ROOT / "models" / "flies13"))
    ap.add_argument("-i", "--input", default=str(data_dir() / "flies13" / "clip.mp4"))
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--frames", default="0-199", help="range predicted on each copy")
    ap.add_argument("--workers", type=int, nargs="+", help="worker counts (default: 1, 2 and the CPU count)")
    ap.add_argument("--chunk-frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--precision", choices=("auto", "int8", "fp32"), default="int8",
                    help="graph for every row (auto lets each engine time both, per thread count)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import ray

    from rtpose.fleet import init_local_ray
    from rtpose.fleet.run import run_fleet

    cpus = os.cpu_count() or 1
    workers = args.workers or sorted({1, 2, cpus})
    scratch = Path(tempfile.mkdtemp(prefix="rtpose-fleet-bench-"))
    copies = []
    for k in range(args.copies):
        copies.append(scratch / f"copy{k:02d}{Path(args.input).suffix}")
        shutil.copyfile(args.input, copies[-1])
    start, last = (int(x) for x in args.frames.split("-"))
    frames_total = args.copies * (last - start + 1)
    info = describe()
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores, flags {' '.join(cpu_flags())}, "
          f"onnxruntime {info['onnxruntime']}, ray {ray.__version__}, load average {info['load_average']}")
    print(f"input: {args.copies} copies of {args.input}, frames {args.frames} each ({frames_total} frames), "
          f"model {args.model} ({args.precision}), chunks of {args.chunk_frames}")
    t = time.perf_counter()
    init_local_ray(ray, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t
    print(f"ray.init (local, {cpus} CPUs): {ray_start:.1f} s, once, not in the rows below")
    rows = []
    try:
        for rep in range(args.repeats):
            out = scratch / f"single{rep}"
            out.mkdir()
            t = time.perf_counter()
            for path in copies:
                predict(args.model, path, args.frames, out / f"{path.stem}.slp", progress=False,
                        precision=args.precision)
            wall = time.perf_counter() - t
            rows.append({"config": "single", "repeat": rep, "workers": 1, "threads": cpus, "wall_s": wall,
                         "loop_s": None, "fps": frames_total / wall})
            for w in workers:
                t = time.perf_counter()
                result = run_fleet(args.model, [str(p) for p in copies], scratch / f"ray{w}_{rep}",
                                   frames=args.frames, workers=w, chunk_frames=args.chunk_frames, progress=False,
                                   precision=args.precision)
                wall = time.perf_counter() - t
                run = result.manifest["runs"][-1]
                assert run["frames_predicted"] == frames_total, run
                same = all(same_poses(scratch / f"ray{w}_{rep}" / f"{p.stem}.predictions.slp", out / f"{p.stem}.slp")
                           for p in copies)
                rows.append({"config": f"ray x{w}", "repeat": rep, "workers": w, "threads": run["threads"],
                             "wall_s": wall, "loop_s": run["seconds"], "fps": frames_total / wall,
                             "loop_fps": frames_total / run["seconds"], "same_as_single": same})
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = [round(x, 2) for x in os.getloadavg()]
    print("\n| config | workers x threads | wall s | FPS (wall) | FPS (dispatch loop) | poses as single |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        loop = f"{r['loop_fps']:.1f}" if r.get("loop_fps") else "-"
        same = {True: "identical", False: "DIFFERENT", None: "-"}[r.get("same_as_single")]
        print(f"| {r['config']} | {r['workers']} x {r['threads']} | {r['wall_s']:.1f} | {r['fps']:.1f} | {loop} | "
              f"{same} |")
    print(f"\nload average after: {load_after}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": info, "flags": cpu_flags(), "ray_init_s": ray_start,
                                                   "load_after": load_after, "args": vars(args), "rows": rows},
                                                  indent=2))


if __name__ == "__main__":
    main()
