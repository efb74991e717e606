"""What the preview stream costs the live loop: preview on and off, interleaved, in one go.

    .venv/bin/python bench/preview_overhead.py                      # 3 pairs of 10 s runs
    .venv/bin/python bench/preview_overhead.py --pairs 5 --duration 20 --json runs/preview_overhead.json

Runs ``rtpose run experiments/male_approach_replay.yaml`` (150 FPS replay, simulated DAQ,
publisher and recorder on) as a subprocess, alternately with the protocol's
``publisher.preview`` (15 FPS, 512 px, quality 80) and with ``publisher.preview=null``,
the order swapped from pair to pair, while ``rtpose view`` is subscribed the whole time,
as an operator's view would be. Each run's ``--summary`` gives the loop's overhead
(``latency_ms.overhead``: arrival -> output written, minus inference and the wait for
the engine), inference, processed and dropped frames, and the preview encoder's
figures. First it times the preview's own costs directly (``direct_costs``: the
loop-side ``offer`` call and one encode), which a loaded machine blurs far less than the
whole loop's p99. Prints every run, the median of each arm, the machine, its load average and
the busiest other processes at the start (timings on a shared machine move with them).
Not niced: the loop is measured as a rig would run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtpose.machine import describe  # noqa: E402

PROTOCOL = REPO / "experiments" / "male_approach_replay.yaml"


def busiest_processes(n: int = 6) -> list[str]:
    """The ``n`` processes using the most CPU (``ps``: averaged over their lifetime), as 'pcpu command' lines."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [" ".join(line.split())[:100] for line in out[1:n + 1]]


def direct_costs(seconds: float = 5.0, fps: float = 150.0) -> dict:
    """The preview's own costs, timed directly: ``offer`` on the calling (loop) thread, and one encode.

    Calls ``PreviewEncoder.offer`` at ``fps`` for ``seconds`` with real clip frames while its
    thread encodes (15 FPS, 512 px, quality 80), then times ``encode_preview`` alone.
    """
    import numpy as np

    from rtpose.data.video import VideoReader
    from rtpose.live.preview import PreviewEncoder, encode_preview
    from rtpose.paths import data_dir

    with VideoReader(data_dir() / "flies13" / "clip.mp4") as video:
        frames = [video.read(i) for i in range(1000, 1030)]
    encoder = PreviewEncoder(lambda topic, message: True, fps=15.0, width=512, quality=80)
    encoder.start()
    offer_ns = []
    try:
        start = time.perf_counter()
        for i in range(int(seconds * fps)):
            while time.perf_counter() < start + i / fps:
                time.sleep(0.0005)
            t0 = time.perf_counter_ns()
            encoder.offer(i, 0.0, frames[i % len(frames)])
            offer_ns.append(time.perf_counter_ns() - t0)
    finally:
        encoder.close()
    encode_ms = []
    for frame in frames * 3:
        t0 = time.perf_counter_ns()
        encode_preview(frame, 512, 80)
        encode_ms.append((time.perf_counter_ns() - t0) / 1e6)
    offer_us = np.array(offer_ns) / 1e3
    return {"offer_us": {"p50": float(np.percentile(offer_us, 50)), "p99": float(np.percentile(offer_us, 99)),
                         "max": float(offer_us.max()), "calls": len(offer_us)},
            "previews_encoded": encoder.encoded,
            "encode_ms": {"p50": float(np.median(encode_ms)), "p99": float(np.percentile(encode_ms, 99))},
            "core_share_at_15fps": float(np.median(encode_ms)) * 15.0 / 1000.0}


def one_run(preview: bool, duration: float, address: str, workdir: Path, index: int) -> dict:
    summary_path = workdir / f"summary-{index}.json"
    command = [sys.executable, "-m", "rtpose", "run", str(PROTOCOL), "--duration", str(duration),
               "--set", f"publisher.address={address}", "--set", f"recorder.path={workdir / f'run-{index}'}",
               "--set", "recorder.export_slp=false", "--summary", str(summary_path)]
    if not preview:
        command += ["--set", "publisher.preview=null"]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    summary = json.loads(summary_path.read_text())
    overhead, inference = summary["latency_ms"]["overhead"], summary["latency_ms"]["inference"]
    frames = summary["frames"]
    pre = summary.get("preview") or {}
    return {"preview": preview, "overhead_p50_ms": overhead["p50"], "overhead_p99_ms": overhead["p99"],
            "overhead_max_ms": overhead["max"], "inference_p50_ms": inference["p50"],
            "acquired": frames["acquired"], "processed": frames["processed"], "dropped": frames["dropped"],
            "previews": pre.get("encoded", 0), "max_encode_ms": pre.get("max_encode_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--address", default="tcp://127.0.0.1:5599")
    parser.add_argument("--view-port", type=int, default=8799)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    machine = describe()
    others = busiest_processes()
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, load average {machine['load_average']}, "
          f"onnxruntime {machine['onnxruntime']}")
    print("busiest processes at the start (pcpu command):")
    for line in others:
        print("   ", line)
    direct = direct_costs()
    print(f"direct: PreviewEncoder.offer on the loop's thread at 150 FPS: p50 {direct['offer_us']['p50']:.1f} us, "
          f"p99 {direct['offer_us']['p99']:.1f} us, max {direct['offer_us']['max']:.1f} us over "
          f"{direct['offer_us']['calls']} calls ({direct['previews_encoded']} previews encoded meanwhile); "
          f"one encode (1024x1024 grey -> 512 px JPEG q80) p50 {direct['encode_ms']['p50']:.2f} ms, "
          f"p99 {direct['encode_ms']['p99']:.2f} ms = {100 * direct['core_share_at_15fps']:.1f}% of a core at 15 FPS",
          flush=True)
    view = subprocess.Popen([sys.executable, "-m", "rtpose", "view", args.address, "--port", str(args.view_port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    try:
        time.sleep(2.0)
        with tempfile.TemporaryDirectory(prefix="rtpose-preview-bench-") as tmp:
            for pair in range(args.pairs):
                order = (True, False) if pair % 2 == 0 else (False, True)
                for preview in order:
                    run = one_run(preview, args.duration, args.address, Path(tmp), len(runs))
                    runs.append(run)
                    print(f"preview {'on ' if preview else 'off'}: overhead p50 {run['overhead_p50_ms']:.3f} ms, "
                          f"p99 {run['overhead_p99_ms']:.3f} ms, max {run['overhead_max_ms']:.2f} ms; "
                          f"inference p50 {run['inference_p50_ms']:.2f} ms; {run['acquired']} acquired = "
                          f"{run['processed']} processed + {run['dropped']} dropped; {run['previews']} previews "
                          f"(max encode {run['max_encode_ms']} ms)", flush=True)
    finally:
        view.terminate()
        view.wait(10)
    medians = {}
    for preview in (True, False):
        arm = [r for r in runs if r["preview"] == preview]
        medians["on" if preview else "off"] = {key: statistics.median(r[key] for r in arm) for key in
                                               ("overhead_p50_ms", "overhead_p99_ms", "inference_p50_ms",
                                                "processed", "dropped")}
    for arm, figures in medians.items():
        print(f"median, preview {arm}: " + ", ".join(f"{k} {v:g}" for k, v in figures.items()))
    machine_after = describe()
    print(f"load average at the end: {machine_after['load_average']}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"machine": machine, "busiest_processes": others, "runs": runs,
                                                   "medians": medians, "duration_s": args.duration, "direct": direct,
                                                   "load_average_end": machine_after["load_average"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
