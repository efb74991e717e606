"""``rtpose bench``: batch-1 round-trip latency (host frame -> host Poses) and throughput.

Frames are decoded before timing, so the figures are the engine's alone: preparing the
frame, running the graph, copying outputs back and assigning identities on the host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rtpose.engine.base import Engine, load_engine
from rtpose.data.video import describe_indices
from rtpose.engine.frames import DecodeReport, read_ahead, resolve_input
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.machine import OtherLoad, describe
from rtpose.paths import claim_report_file, make_parent
from rtpose import jsonsafe

DEFAULT_FRAMES = 100  # frames timed without --frames: the first ones the input holds
# below this many timed frames the p90/p99 are (nearly) the slowest frame: bench says so
MIN_FRAMES_FOR_PERCENTILES = 20
# other processes busy on more cores than this (on average) while timing: bench warns
OTHER_LOAD_WARN_CORES = 0.25


def time_batch1(engine: Engine, frames: list[np.ndarray], warmup: int) -> np.ndarray:
    """Per-frame latency in ms of ``engine.infer`` over ``frames`` after ``warmup`` calls."""
    for i in range(warmup):
        engine.infer(frames[i % len(frames)])
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        engine.infer(frame)
        out[i] = (time.perf_counter() - t) * 1e3
    return out


def throughput(engine: Engine, frames: list[np.ndarray], batch_size: int, min_seconds: float = 2.0) -> float:
    """Frames per second of ``infer_batch`` at ``batch_size`` (one untimed batch first)."""
    batch = [frames[i % len(frames)] for i in range(batch_size)]
    engine.infer_batch(batch)
    n, t0 = 0, time.perf_counter()
    while True:
        engine.infer_batch(batch)
        n += batch_size
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n / elapsed


def best_batch(sweep: dict[str, float]) -> tuple[str, list[str]]:
    """The batch size to recommend from a throughput sweep, and the larger ones no faster.

    Figures are printed as whole frames/s, so two batch sizes whose figures print the
    same are equal as far as the user can tell (and the timing's noise is larger than
    that): the smallest of those that print the highest figure is the best, as it costs
    the least latency and memory; the larger ones are named as no faster.

    Args:
        sweep: frames/s by batch size (``"1"``, ``"2"``, ...), in increasing batch size.

    Returns:
        ``(best, tied)``: the batch size, and the larger ones whose figure prints the same.
    """
    shown = {b: f"{f:.0f}" for b, f in sweep.items()}
    top = shown[max(sweep, key=sweep.get)]
    equal = [b for b in sweep if shown[b] == top]
    return equal[0], equal[1:]


def summarize(ms: np.ndarray) -> dict:
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "mean": float(ms.mean())}


def claim_histogram(path: str | Path, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Path:
    """Check ``--histogram PATH`` before any timing: a format matplotlib can write (by the
    extension: ``Figure().canvas.get_supported_filetypes()``; with none, matplotlib would
    write ``PATH.png``, another file than the one named), and :func:`claim_report_file`.

    Raises:
        RtposeError: one line naming the file and, for the extension, the formats.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    extension = path.suffix.lower().lstrip(".")
    if extension not in formats:
        said = "no extension to choose the format by" if not extension else \
            f"matplotlib cannot write .{extension} files"
        raise RtposeError(f"--histogram {path}: {said}; end the name in one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    return claim_report_file(path, overwrite, "--histogram", inputs)


def plot_histogram(ms: np.ndarray, path: str | Path, title: str) -> None:
    """The latency histogram of ``ms`` (per-frame ms) with its p50 and p99, saved at
    ``path`` (its missing parent folders are created; the format follows the extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(ms, bins=60, color="#3b6ea8")
    for q, style in ((50, "-"), (99, "--")):
        v = np.percentile(ms, q)
        ax.axvline(v, color="k", linestyle=style, label=f"p{q} {v:.2f} ms")
    ax.set_xlabel("round-trip latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(make_parent(Path(path)))
    plt.close(fig)


def _timings(args: argparse.Namespace, engine: Engine, frames: list[np.ndarray]) -> dict:
    """The throughput figures ``rtpose bench`` asked for: at ``--batch-size``, and the sweep."""
    result: dict = {}
    if args.batch_size > 1:
        result["fps_at_batch_size"] = {str(args.batch_size): throughput(engine, frames, args.batch_size)}
    if not args.no_batch_sweep:
        sizes = [1, 2, 4, 8, 16] if args.engine.startswith("ort-cpu") else [1, 4, 16, 32, 64, 128, 256]
        sweep = {str(b): throughput(engine, frames, b) for b in sizes}
        best, tied = best_batch(sweep)
        result["throughput_fps"] = sweep
        result["best_batch_size"] = int(best)
        result["best_fps"] = sweep[best]
        result["no_faster_batch_sizes"] = [int(b) for b in tied]  # larger, and equal within rounding
    return result


def main(args: argparse.Namespace) -> int:
    if args.warmup < 0:
        raise RtposeError(f"--warmup must be 0 or more (got {args.warmup})")
    if args.batch_size < 1:
        raise RtposeError(f"--batch-size must be at least 1 (got {args.batch_size})")
    # then the outputs: a refused one costs no decoding and no timing
    inputs = [args.input, args.model]
    json_out = claim_report_file(args.json_out, args.overwrite, "--json", inputs) if args.json_out else None
    histogram = claim_histogram(args.histogram, args.overwrite, inputs) if args.histogram else None
    video, indices = resolve_input(args.input, args.frames, spec=ExportSpec.load(args.model))
    if args.frames is None:
        indices = indices[:DEFAULT_FRAMES]  # the first 100 the input holds, or all of a shorter one
    report = DecodeReport()
    frames = [f for _, f in read_ahead(video, indices, report=report)]
    for note in report.notes():
        print(f"warning: {args.input}: {note}", file=sys.stderr)
    if not frames:
        raise RtposeError(f"{args.input}: no frames to time")
    indices = [i for i in indices if i not in set(report.missing)]
    engine = load_engine(args.model, args.engine, args.precision)
    with OtherLoad() as other:
        ms = time_batch1(engine, frames, args.warmup)
        result = _timings(args, engine, frames)
    result = {
        "engine": engine.name, "device": engine.device, "model": str(args.model),
        "graph": engine.graph, "graph_reason": engine.graph_reason.strip(),
        "self_check": engine.check.to_dict() if engine.check is not None else None,
        "frames": describe_indices(indices), "n": len(frames), "batch_size": 1,
        "latency_ms": summarize(ms), "fps": float(1e3 / ms.mean()), "machine": describe(), **result,
    }
    result["machine"]["other_processes_cores_busy"] = other.cores
    lat = result["latency_ms"]
    of = f" of {Path(video).name}" if Path(video).name != Path(args.input).name else ""  # a .slp: its video
    print(f"{engine.name} on {engine.device}, model {args.model}, frames {result['frames']}{of} (n={len(frames)})")
    print(f"graph: {engine.describe_graph()}")
    print(f"batch 1 round trip: p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
          f"max {lat['max']:.2f}  -> {result['fps']:.0f} frames/s")
    if "throughput_fps" in result:
        sweep_text = "  ".join(f"b{b}: {f:.0f}" for b, f in result["throughput_fps"].items())
        tied = result["no_faster_batch_sizes"]
        same = f" ({', '.join(f'b{b}' for b in tied)}: the same within rounding, no faster)" if tied else ""
        print(f"throughput (frames/s): {sweep_text}; best {result['best_fps']:.0f} at batch "
              f"{result['best_batch_size']}{same}")
    if len(frames) < MIN_FRAMES_FOR_PERCENTILES:
        n = len(frames)
        more = "a longer input" if len(indices) == n and args.frames is None and n < DEFAULT_FRAMES \
            else "more frames (--frames) or a longer input"
        print(f"warning: the percentiles come from only {n} timed frame{'s' if n != 1 else ''} "
              f"of {args.input} (fewer than {MIN_FRAMES_FOR_PERCENTILES}: p90 and p99 lie between the slowest "
              f"frames{'' if n > 1 else ', here the only one'}"
              f"{'; the throughput batches repeat them' if not args.no_batch_sweep or args.batch_size > 1 else ''}); "
              f"time {more} for figures to rely on", file=sys.stderr)
    m = result["machine"]
    others = "" if other.cores is None else f"; other processes kept {other.cores:.1f} cores busy while timing"
    print(f"machine: {m['cpu']} ({' '.join(m['cpu_flags'])}), {m['cpu_count']} cores, "
          f"onnxruntime {m['onnxruntime']}{others}")
    if other.cores is not None and other.cores > OTHER_LOAD_WARN_CORES:
        print(f"warning: other processes kept {other.cores:.1f} of {m['cpu_count']} cores busy while timing: "
              "these figures are slower than this machine's; time again with it idle", file=sys.stderr)
    if json_out is not None:
        make_parent(json_out).write_text(jsonsafe.dumps(result, indent=2))
        print(f"figures: {json_out}")
    if histogram is not None:
        plot_histogram(ms, histogram, f"{engine.name}, batch 1, {engine.device}")
        print(f"histogram: {histogram}")
    return 0
