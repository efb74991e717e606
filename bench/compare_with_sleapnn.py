"""rtpose vs sleap-nn 0.3.5: batch-1 CPU latency on the same frames, in one run.

Usage: .venv/bin/python bench/compare_with_sleapnn.py [--model models/flies13] [--start 1200 --end 1300]

Runs ../shared/tools/peer_latency.sh (sleap-nn's torch predictor and its own ONNX export
with 2 max instances, in a side environment that is never a dependency of rtpose), then
`rtpose bench` with the ort-cpu engine on the same frames, and prints the ratios. The
peer times a frame from sleap-nn's prefetching reader (torch) or from a decoded array
(ONNX); rtpose times decoded frames -> identified Poses, host-side matching included.
Run it on an otherwise idle machine: both sides use every core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO.parent / "shared" / "tools" / "peer_latency.sh"


def peer(start: int, end: int) -> dict[str, dict]:
    out = subprocess.run(["bash", str(TOOL), str(start), str(end)], capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("sleap-nn torch predictor:"):
            figures["sleap-nn torch"] = json.loads(line.split(":", 1)[1])
        elif line.startswith("sleap-nn ONNX export:"):
            figures["sleap-nn ONNX (2 instances)"] = json.loads(line.split(":", 1)[1])
    return figures


def ours(model: str, start: int, end: int) -> dict:
    out = REPO / "runs" / "bench_compare.json"
    subprocess.run([sys.executable, "-m", "rtpose", "bench", "-m", model, "-i",
                    str(REPO.parent / "shared" / "data" / "flies13" / "clip.mp4"), "--frames", f"{start}-{end - 1}",
                    "--no-batch-sweep", "--json", str(out), "--overwrite"], check=True, cwd=REPO)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/flies13")
    ap.add_argument("--start", type=int, default=1200)
    ap.add_argument("--end", type=int, default=1300, help="exclusive")
    args = ap.parse_args()
    peers = peer(args.start, args.end)
    mine = ours(args.model, args.start, args.end)
    ours_p50 = mine["latency_ms"]["p50"]
    print(f"\nframes {args.start}-{args.end - 1}, batch 1, CPU: {mine['machine']['cpu']}, {mine['machine']['cpu_count']} cores")
    print(f"{'':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'rtpose is':>12s}")
    print(f"{'rtpose ort-cpu (' + args.model + ')':34s} {ours_p50:8.2f} {mine['latency_ms']['p99']:8.2f}")
    for name, fig in peers.items():
        print(f"{name:34s} {fig['p50']:8.2f} {fig['p99']:8.2f} {fig['p50'] / ours_p50:10.1f}x faster")
    fastest = min(f["p50"] for f in peers.values())
    print(f"rtpose p50 / sleap-nn's fastest p50 = {ours_p50 / fastest:.2f} (target <= 0.50, goal 0.33)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
