"""Which of two (or more) exports is faster here: their graphs timed in turns, in one process.

Usage: .venv/bin/python bench/alternate_exports.py -m OLD_EXPORT -m NEW_EXPORT [--rounds 14]
       [--frames 1200-1299] [--precision int8]

On a shared virtual machine the same benchmark can differ by half between two runs
minutes apart, so two exports are compared only by timing them in turns: each round
runs every export's graph (``Engine.run_raw``, ort-cpu, the given precision) on the same
frames, 10 untimed and then each timed; the figure of a round is its median. Prints each
round's figure, the median over rounds and the change against the first export, and the
machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtpose.data.video import VideoReader, parse_frame_range  # noqa: E402
from rtpose.engine.base import load_engine  # noqa: E402
from rtpose.errors import RtposeError  # noqa: E402
from rtpose.machine import cpu_flags, cpu_name  # noqa: E402
from rtpose.paths import data_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", required=True, help="export directory (twice or more)")
    parser.add_argument("-i", "--input", default=str(data_dir() / "flies13" / "clip.mp4"))
    parser.add_argument("--frames", default="1200-1299", help="frames START-END, both included (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=14,
                        help="rounds in turns, each export once a round (default: %(default)s)")
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"), help="the graph each export runs")
    args = parser.parse_args()
    if len(args.model) < 2:
        parser.error("give two exports or more (-m OLD -m NEW)")
    resolved = [Path(m).resolve() for m in args.model]
    same = next((m for m, r in zip(args.model, resolved) if resolved.count(r) > 1), None)
    if same:
        parser.error(f"{same} given twice: give two different exports (copy one to time it against itself)")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    try:
        with VideoReader(args.input) as reader:
            frames = [reader.read(i)[None, None] for i in parse_frame_range(args.frames, reader.n_frames)]
        engines = {m: load_engine(m, "ort-cpu", precision=args.precision) for m in args.model}
    except RtposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rounds: dict[str, list[float]] = {m: [] for m in engines}
    for _ in range(args.rounds):
        for model, engine in engines.items():
            for frame in frames[:10]:
                engine.run_raw(frame)
            times = []
            for frame in frames:
                t0 = time.perf_counter()
                engine.run_raw(frame)
                times.append(time.perf_counter() - t0)
            rounds[model].append(float(np.median(times)) * 1e3)
    print(f"machine: {cpu_name()} ({' '.join(cpu_flags())}); {args.precision} graphs, frames {args.frames}, "
          f"{args.rounds} rounds in turns")
    first = float(np.median(rounds[args.model[0]]))
    spread = 0.0  # the largest relative range of one export's round medians: what noise alone moves
    for model, values in rounds.items():
        median = float(np.median(values))
        spread = max(spread, (max(values) - min(values)) / median)
        change = "" if model == args.model[0] else f" ({100 * (median / first - 1):+.1f}% against the first)"
        print(f"{model}: median of round medians {median:.3f} ms{change}; rounds "
              + " ".join(f"{v:.2f}" for v in values))
    if args.rounds < 5 or len(frames) < 30:
        print(f"note: {args.rounds} round(s) of {len(frames)} frame(s) say little on a shared machine: "
              "differences of tens of percent arise by chance; use the defaults (14 rounds of 100 frames)")
    print(f"the round medians of one export spread over {100 * spread:.1f}% of its median here: a difference "
          "smaller than that is noise")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
