"""``rtpose predict``: poses for every chosen frame of a video, written as SLEAP .slp."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rtpose.data.predictions import write_predictions
from rtpose.engine.base import Engine, load_engine
from rtpose.engine.continuity import IdentityContinuity
from rtpose.engine.frames import read_ahead, resolve_input
from rtpose.errors import RtposeError
from rtpose.poses import Poses


def default_output(input_path: Path) -> Path:
    """``INPUT.predictions.slp`` beside the input, or in the working directory when the
    input's folder is read-only (shared data): found out before the run, not after it."""
    beside = input_path.with_suffix(".predictions.slp")
    if os.access(beside.parent, os.W_OK):
        return beside
    return Path.cwd() / beside.name


def predict(model: str | Path, input_path: str | Path, frames: str | None = None, output: str | Path | None = None,
            batch_size: int = 1, engine_name: str = "ort-cpu", only_labeled: bool = False,
            progress: bool = True, continuity: bool = True) -> Path:
    if batch_size < 1:
        raise RtposeError("--batch-size must be at least 1")
    video, indices = resolve_input(input_path, frames, only_labeled)
    if not indices:
        raise RtposeError(f"{input_path}: no frames to predict on")
    output = Path(output) if output else default_output(Path(input_path))
    if not output.parent.is_dir():
        raise RtposeError(f"{output}: its folder does not exist")
    engine = load_engine(model, engine_name)
    spec = engine.spec
    columns = [TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]} FPS"),
               TimeRemainingColumn()]
    t0 = time.perf_counter()
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("", total=len(indices), fps="-")

        def advance(n: int) -> None:
            bar.advance(task, n)
            done = bar.tasks[0].completed
            bar.update(task, fps=f"{done / (time.perf_counter() - t0):.0f}")

        raw, _ = predict_frames(engine, video, indices, batch_size, on_batch=advance)
    follow = IdentityContinuity(spec.n_classes) if continuity else None
    results = follow_identities(raw, follow)
    wall = time.perf_counter() - t0
    write_predictions(output, video, spec.node_names, spec.edges, spec.class_names, results)
    n_inst = sum(len(p) for _, p in results)
    print(f"{len(results)} frames, {n_inst} instances -> {output} ({len(results) / wall:.0f} frames/s, "
          f"{engine.name} on {engine.device})")
    if follow is not None and follow.followed:
        print(f"identities followed from the previous frame where the identity head was not decisive: "
              f"{follow.followed} frames (--no-continuity: the head alone)")
    return output


def predict_frames(engine: Engine, video: str | Path, indices: Sequence[int], batch_size: int = 1,
                   skip_undecodable: bool = False,
                   on_batch: Callable[[int], None] | None = None) -> tuple[list[tuple[int, Poses]], list[int]]:
    """Poses of the given frames of one video with a loaded engine, as the head gives them.

    The building block of ``rtpose predict`` in one process and of each chunk that
    ``rtpose.fleet`` runs on a Ray worker; identity continuity is applied afterwards, in
    frame order, by :func:`follow_identities`.

    Args:
        engine: a loaded engine (see :func:`rtpose.engine.base.load_engine`).
        video: the video file (or .pkg.slp) to read.
        indices: frame indices, in the order to predict them.
        batch_size: frames per engine call.
        skip_undecodable: frames that fail to decode are listed in the second return value
            and skipped; without it the first one raises.
        on_batch: called with the number of frames handled (predicted or undecodable)
            after each engine call.

    Returns:
        ``(frame_index, Poses)`` per decoded frame, in order, and the indices that did not
        decode.

    Raises:
        RtposeError: the video cannot be opened, or (without ``skip_undecodable``) a frame
            does not decode.
    """
    results: list[tuple[int, Poses]] = []
    undecoded: list[int] = []
    pending: list[tuple[int, np.ndarray]] = []
    skipped = 0

    def flush() -> None:
        nonlocal skipped
        poses = engine.infer_batch([f for _, f in pending]) if pending else []
        results.extend((i, p) for (i, _), p in zip(pending, poses))
        if on_batch is not None:
            on_batch(len(pending) + skipped)
        pending.clear()
        skipped = 0

    for idx, frame in read_ahead(Path(video), list(indices), skip_undecodable=skip_undecodable):
        if frame is None:
            undecoded.append(idx)
            skipped += 1
            continue
        pending.append((idx, frame))
        if len(pending) == batch_size:
            flush()
    if pending or skipped:
        flush()
    return results, undecoded


def follow_identities(frames: Iterable[tuple[int, Poses]],
                      follow: IdentityContinuity | None) -> list[tuple[int, Poses]]:
    """Apply identity continuity to ``(frame_index, Poses)`` in frame order (or pass them through)."""
    if follow is None:
        return list(frames)
    return [(i, follow(p, i)) for i, p in frames]


def main(args: argparse.Namespace) -> int:
    from rtpose.fleet.inputs import use_fleet

    if use_fleet(args.input, args.workers, args.ray, args.chunk_frames):
        from rtpose.fleet.run import main as fleet_main

        return fleet_main(args)
    if args.threads is not None:
        raise RtposeError("--threads is for Ray workers; one input in one process uses every core")
    predict(args.model, args.input[0], args.frames, args.output, args.batch_size, args.engine, args.only_labeled,
            continuity=not args.no_continuity)
    return 0
