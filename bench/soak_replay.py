"""Replay soak: run the live daemon for a long time and watch its resident memory.

    .venv/bin/python bench/soak_replay.py                 # 30 minutes (the target: growth < 50 MB)
    .venv/bin/python bench/soak_replay.py --minutes 3     # a quick check

Runs ``experiments/male_approach_replay.yaml`` (or ``--protocol``) with the clip looping,
the publisher and recorder on, in this process, and samples the process's RSS with
psutil every ``--interval`` seconds. Growth is measured from the first sample after the
warm-up (``--warmup`` seconds: the engine's arenas, the decoder, the first recorder
batches) to the end, which is what grows without bound if something leaks per frame.
Prints the machine it ran on, the samples, and the figures.
"""

from __future__ import annotations

from rtpose.live.memory import limit_malloc_arenas

limit_malloc_arenas(1)  # as `rtpose run` does, before anything starts threads

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

from rtpose.live.daemon import Daemon  # noqa: E402
from rtpose.live.protocol import load_protocol  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    memory_gb = psutil.virtual_memory().total / 2**30
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the baseline sample")
    parser.add_argument("--protocol", default=str(REPO / "experiments" / "male_approach_replay.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="rtpose-soak-"))
    overrides = ["camera.loop=true", f"recorder.path={run_dir}/run", "recorder.export_slp=false",
                 "publisher.address=tcp://127.0.0.1:*", *args.overrides]
    loaded = load_protocol(args.protocol, overrides, duration=args.minutes * 60.0)
    daemon = Daemon(loaded)
    process = psutil.Process()
    samples: list[tuple[float, float, int]] = []  # (seconds, RSS MB, frames processed)
    done = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not done.wait(args.interval):
            samples.append((time.monotonic() - start, process.memory_info().rss / 2**20, daemon.processed))
            t, rss, processed = samples[-1]
            print(f"  {t:7.0f} s  RSS {rss:7.1f} MB  {processed} frames processed", flush=True)

    print(f"machine: {machine()}")
    print(f"soak: {loaded.path.name} for {args.minutes:g} min, clip looping, recording to {run_dir}")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = daemon.run()
    done.set()
    sampler.join()

    frames = result.summary["frames"]
    print(f"stopped: {result.stop_reason}{' (' + result.error + ')' if result.error else ''}; "
          f"{frames['acquired']} acquired = {frames['processed']} processed + {frames['dropped']} dropped")
    latency = result.summary["latency_ms"]
    print(f"inference p50 {latency['inference']['p50']} ms p99 {latency['inference']['p99']} ms; "
          f"overhead p50 {latency['overhead']['p50']} ms p99 {latency['overhead']['p99']} ms")
    after_warmup = [s for s in samples if s[0] >= args.warmup] or samples
    if len(after_warmup) < 2:
        print("too few samples after the warm-up for a growth figure; run longer")
        return
    base, last = after_warmup[0], after_warmup[-1]
    peak = max(s[1] for s in after_warmup)
    growth = last[1] - base[1]
    minutes = (last[0] - base[0]) / 60
    verdict = "PASS" if growth < 50 else "FAIL"
    if args.minutes < 30:
        verdict = f"{verdict} so far (a {args.minutes:g} min run; the target is for 30 min)"
    print(f"RSS: {base[1]:.1f} MB at {base[0]:.0f} s -> {last[1]:.1f} MB at {last[0]:.0f} s: growth {growth:+.1f} MB "
          f"over {minutes:.1f} min ({growth / minutes:+.2f} MB/min), peak {peak:.1f} MB; "
          f"target: < 50 MB over 30 min -> {verdict}")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
