"""A camera faster than the machine: frames processed per second against the rate asked of the replay.

    .venv/bin/python bench/replay_rate.py                        # 150, 600, 1000, 2000 FPS, 10 s each
    .venv/bin/python bench/replay_rate.py --rates 150,2000 --seconds 5
    .venv/bin/python bench/replay_rate.py --video clip_mjpeg.avi     # an intra-only copy of the clip

Runs ``experiments/replay_dry_run.yaml`` (the fly clip looping, tracking only, publisher
and recorder off) in this process at each requested rate and prints, per rate: frames
exposed (acquired), processed per second, dropped (by reason), the share of exposures
that came out on the requested clock, and exposure -> output latency. A real camera
costs nothing for frames nobody takes; the replay decodes only the frames the loop uses
(``rtpose/hw/replay.py``), so the processed rate should stay near what the engine alone
does (``rtpose bench``) at any rate. Prints the machine it ran on: the figures depend on
it and on what else runs there.
"""

from __future__ import annotations

from rtpose.live.memory import limit_malloc_arenas

limit_malloc_arenas(1)  # as `rtpose run` does, before anything starts threads

import argparse  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rtpose.live.daemon import Daemon  # noqa: E402
from rtpose.live.protocol import load_protocol  # noqa: E402
from rtpose.machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_at(protocol: Path, fps: float, seconds: float, video: str | None = None) -> dict:
    overrides = [f"camera.fps={fps}", "publisher.enabled=false", "recorder.enabled=false"]
    if video:
        overrides += [f"camera.path={video}", "camera.frames=null"]
    loaded = load_protocol(protocol, overrides, duration=seconds)
    daemon = Daemon(loaded)
    result = daemon.run()
    if result.error:
        raise SystemExit(f"{fps:g} FPS: the run failed: {result.stop_reason}: {result.error}")
    summary = result.summary
    frames = summary["frames"]
    latency = summary["latency_ms"]["exposure_to_output"]
    return {
        "requested_fps": fps,
        "stop": result.stop_reason,
        "acquired": frames["acquired"],
        "processed": frames["processed"],
        "processed_fps": frames["processed_fps"],
        "dropped": frames["dropped_by_reason"],
        "exposure_to_output_ms": (latency.get("p50"), latency.get("p99")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="150,600,1000,2000", help="requested frame rates, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="run length at each rate")
    parser.add_argument("--protocol", default=str(REPO / "experiments" / "replay_dry_run.yaml"))
    parser.add_argument("--video", help="replay this file instead of the protocol's (e.g. an intra-only copy)")
    args = parser.parse_args()
    os.chdir(REPO)  # the protocol's model path is relative to the repository
    machine = describe()
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, load average {machine['load_average']}, "
          f"onnxruntime {machine['onnxruntime']}")
    print(f"{'requested FPS':>13} {'acquired':>9} {'processed/s':>12} {'dropped (camera/replaced/lost)':>31} "
          f"{'exposure->output p50 / p99 ms':>30}  stop")
    for fps in (float(r) for r in args.rates.split(",")):
        r = run_at(Path(args.protocol), fps, args.seconds, args.video)
        d = r["dropped"]
        p50, p99 = (np.nan if v is None else v for v in r["exposure_to_output_ms"])
        print(f"{fps:13g} {r['acquired']:9d} {r['processed_fps']:12.1f} "
              f"{d.get('camera', 0):>13d}/{d.get('replaced', 0)}/{d.get('lost', 0):<8d}"
              f"{p50:>20.1f} / {p99:<8.1f}  {r['stop']}", flush=True)


if __name__ == "__main__":
    main()
