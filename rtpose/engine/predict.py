"""``rtpose predict``: poses for every chosen frame of a video, written as SLEAP .slp.

Nothing decoded is lost: frames that cannot be read (undecodable, or past the real end
of a stream whose container declared more) are left out of the .slp, listed in its
provenance (``rtpose.frames_not_read``) and in a warning, and ``rtpose predict`` exits
with :data:`EXIT_FRAMES_MISSING` instead of 0. Without ``--frames``, a stream shorter than
its container declares is simply a shorter video: every frame it holds is predicted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rtpose.data.predictions import check_slp_output, write_predictions
from rtpose.engine.base import Engine, load_engine
from rtpose.engine.continuity import IdentityContinuity
from rtpose.data.video import describe_indices
from rtpose.engine.frames import DecodeReport, read_ahead, resolve_input
from rtpose.errors import Interrupted, RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.paths import check_writable, claim_output_file, no_such_file, shell_path
from rtpose.poses import Poses

EXIT_FRAMES_MISSING = 3  # predictions written, but some frames asked for could not be read


def default_output(input_path: Path) -> Path:
    """``INPUT.predictions.slp`` beside the input, or in the working directory when the
    input's folder is read-only (shared data): found out before the run, not after it."""
    beside = input_path.with_suffix(".predictions.slp")
    if os.access(beside.parent, os.W_OK) and _mode_allows_writing(beside.parent):
        return beside
    return Path.cwd() / beside.name


def _mode_allows_writing(folder: Path) -> bool:
    """False for a folder without any write permission bit (``dr-xr-xr-x``): root may
    write there (``os.access`` says yes), but whoever made it read-only meant it."""
    try:
        return bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def model_provenance(model: str | Path, engine: str, graph: str | None, continuity: bool) -> dict:
    """What made a predictions file, for its provenance.

    Args:
        model: the export directory.
        engine: the engine's name (``ort-cpu``).
        graph: the graph that ran (``fp32``, ``int8``; several joined by ", " on Ray).
        continuity: whether identity continuity was on.

    Returns:
        ``rtpose.*`` keys: rtpose's version, the export (path, config hash, the format and
        version of the weights' source), the engine and graph, continuity, and the
        model's distance split (``rtpose.distance_split``: its anchor part and, where
        recorded, the animal size unit of its training labels, which ``rtpose eval``
        splits by). JSON-able values only (sleap-io stores them); the same for one
        process and for Ray.
    """
    from rtpose import __version__

    spec_file = Path(model) / "rtpose.json"
    info = json.loads(spec_file.read_text()) if spec_file.is_file() else {}
    source = info.get("source") or {}
    out = {"rtpose.version": __version__, "rtpose.model": str(Path(model).resolve()),
           "rtpose.model_config_hash": info.get("config_hash"),
           "rtpose.model_source": {k: source[k] for k in ("format", "version") if k in source},
           "rtpose.engine": engine, "rtpose.graph": graph, "rtpose.identity_continuity": bool(continuity)}
    if "anchor_part" in info:  # None (the box centre) is a choice too
        split = {"anchor_part": info["anchor_part"] or None}
        if info.get("animal_size_px"):
            split["animal_size_px"] = float(info["animal_size_px"])
        out["rtpose.distance_split"] = split
    return {k: v for k, v in out.items() if v is not None}


def predict(model: str | Path, input_path: str | Path, frames: str | None = None, output: str | Path | None = None,
            batch_size: int = 1, engine_name: str = "ort-cpu", only_labeled: bool = False,
            progress: bool = True, continuity: bool = True, report: DecodeReport | None = None,
            precision: str = "auto", overwrite: bool = False) -> Path:
    """Predict poses on ``frames`` of ``input_path`` and write them to ``output`` (.slp).

    ``report``, when given, receives the frames that could not be read (see the module
    docstring); the caller decides what they mean for its exit status. ``precision``:
    which graph of the export (rtpose.engine.base.load_engine). An existing ``output``
    is refused unless ``overwrite`` (:func:`claim_output`), before any work.

    Raises:
        RtposeError: bad input, model or output path, an existing output without
            ``overwrite`` (nothing is written, nothing read but file headers), an input
            that does not fit the model (its frame size, a .slp's skeleton:
            ``rtpose.engine.frames.resolve_input``), or a graph that fails its
            self-check on this machine.
    """
    if batch_size < 1:
        raise RtposeError("--batch-size must be at least 1")
    if not Path(input_path).exists():  # said first: a mistyped input is not an -o problem
        raise RtposeError(no_such_file(input_path))
    output = claim_output(input_path, output, overwrite)  # before the model or any frame is read
    spec = ExportSpec.load(model)
    video, indices = resolve_input(input_path, frames, only_labeled, spec)  # refuses an input that does not fit
    if not indices:
        raise RtposeError(f"{input_path}: no frames to predict on")
    if Path(video).suffix.lower() == ".slp":
        print(f"{Path(video).name} is a package: predicting on {_held_frames(indices, frames is not None or only_labeled)}")
    report = report if report is not None else DecodeReport()
    engine = load_engine(model, engine_name, precision)
    spec = engine.spec
    columns = [TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]} FPS"),
               TimeRemainingColumn()]
    t0 = time.perf_counter()
    # the bar goes to stderr, and only to a terminal: stdout keeps the result lines alone
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not (progress and console.is_terminal), transient=True) as bar:
        task = bar.add_task("", total=len(indices), fps="-")
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(task, completed=done, fps=f"{done / (time.perf_counter() - t0):.0f}")

        try:
            raw = predict_frames(engine, video, indices, batch_size, report=report, on_batch=advance)
        except KeyboardInterrupt:
            print(f"interrupted after {done} of {len(indices)} frames: nothing written ({output} is written at the "
                  "end, in one go)", file=sys.stderr)
            raise Interrupted() from None
    follow = IdentityContinuity(spec.n_classes) if continuity else None
    results = follow_identities(raw, follow)
    wall = time.perf_counter() - t0
    for note in report.notes(range_given=frames is not None or only_labeled):
        print(f"warning: {input_path}: {note}", file=sys.stderr)
    if report.stream_frames is not None and frames is None:
        report.past_end.clear()  # no range asked for: the video is just shorter than declared
    provenance = model_provenance(model, engine.name, engine.graph, continuity)
    if report.missing:
        provenance["rtpose.frames_not_read"] = report.missing
    if report.stream_frames is not None:
        provenance["rtpose.stream_frames"] = report.stream_frames
    write_predictions(output, video, spec.node_names, spec.edges, spec.class_names, results, provenance=provenance)
    n_inst = sum(len(p) for _, p in results)
    print(f"{_count(len(results), 'frame')}, {_count(n_inst, 'instance')} -> {output} ({len(results) / wall:.0f} frames/s, "
          f"{engine.name} on {engine.device})")
    if results and n_inst == 0:
        print(f"warning: the model found no animal in any of the {_count(len(results), 'frame')}: frames of another "
              "setup, or a model not trained enough (its training report says how it did on its validation frames)",
              file=sys.stderr)
    print(f"ran the {engine.describe_graph()}")
    if follow is not None and follow.followed:
        print(f"identities followed from the previous frame where the identity head was not decisive: "
              f"{follow.followed} frames (--no-continuity: the head alone)")
    if report.missing:
        which = "asked for" if frames is not None else "labelled" if only_labeled else "of the input"
        print(f"warning: {len(report.missing)} frame(s) {which} have no poses ({describe_indices(report.missing)}); "
              f"the poses of the {len(results)} that were read are in {output}", file=sys.stderr)
    return output


def claim_output(input_path: str | Path, output: str | Path | None, overwrite: bool = False) -> Path:
    """The .slp a one-input predict writes (``-o``, else :func:`default_output`), checked
    before any work: its folder exists, it is not the input, and it is not an existing
    file unless ``overwrite`` (``--overwrite``).

    Raises:
        RtposeError: one line naming the file (and the flag, for an existing file).
    """
    output = Path(output) if output else default_output(Path(input_path))
    check_slp_output(output, folder_hint=f"e.g. -o {shell_path(output / default_output(Path(input_path)).name)}; "
                                         "several inputs write into a folder")
    if output.parent.exists() and not output.parent.is_dir():
        raise RtposeError(f"-o {output}: cannot write ({output.parent} is not a folder)")
    if not output.parent.is_dir():
        raise RtposeError(f"{output}: its folder does not exist")
    if output.exists() and Path(input_path).exists() and os.path.samefile(output, input_path):
        raise RtposeError(f"{output} is the input: give another -o (--overwrite never replaces the input)")
    claim_output_file(output, overwrite)
    check_writable(output)  # an .slp is written at the end: a folder that takes no file would lose the work
    return output


def _held_frames(indices: Sequence[int], chosen: bool) -> str:
    """What a run on a package predicts on, in words: ``the one frame it holds (frame 0)``,
    ``the 2 frames it holds (all of them: frames 5, 12)``, ``the 1 frame it holds that was
    asked for (frame 12)``."""
    n = len(indices)
    frames = f"frame {indices[0]}" if n == 1 else f"frames {describe_indices(indices)}"
    if chosen:
        return f"the {_count(n, 'frame')} it holds that {'was' if n == 1 else 'were'} asked for ({frames})"
    return f"the one frame it holds ({frames})" if n == 1 else f"the {n} frames it holds (all of them: {frames})"


def _count(n: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def predict_frames(engine: Engine, video: str | Path, indices: Sequence[int], batch_size: int = 1,
                   report: DecodeReport | None = None,
                   on_batch: Callable[[int], None] | None = None) -> list[tuple[int, Poses]]:
    """Poses of the given frames of one video with a loaded engine, as the head gives them.

    The building block of ``rtpose predict`` in one process and of each chunk that
    :mod:`rtpose.fleet` runs on a Ray worker; identity continuity is applied afterwards,
    in frame order, by :func:`follow_identities`.

    Args:
        engine: a loaded engine (see :func:`rtpose.engine.base.load_engine`).
        video: the video file (or .pkg.slp) to read.
        indices: frame indices, in the order to predict them.
        batch_size: frames per engine call.
        report: receives the frames that could not be read, which are then skipped
            (see :func:`rtpose.engine.frames.read_ahead`); without it they raise.
        on_batch: called with the number of frames predicted after each engine call.

    Returns:
        ``(frame_index, Poses)`` per frame read, in order.

    Raises:
        RtposeError: the video cannot be opened, or (without ``report``) a frame cannot be read.
    """
    results: list[tuple[int, Poses]] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        poses = engine.infer_batch([f for _, f in pending])
        results.extend((i, p) for (i, _), p in zip(pending, poses))
        if on_batch is not None:
            on_batch(len(pending))
        pending.clear()

    for idx, frame in read_ahead(Path(video), list(indices), report=report):
        pending.append((idx, frame))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return results


def follow_identities(frames: Iterable[tuple[int, Poses]],
                      follow: IdentityContinuity | None) -> list[tuple[int, Poses]]:
    """Apply identity continuity to ``(frame_index, Poses)`` in frame order (or pass them through)."""
    if follow is None:
        return list(frames)
    return [(i, follow(p, i)) for i, p in frames]


def main(args: argparse.Namespace) -> int:
    """Exit status: 0, or :data:`EXIT_FRAMES_MISSING` when frames asked for could not be read.

    One input without Ray options (the CLI sends the others to :mod:`rtpose.fleet.run`).
    """
    if args.threads is not None:
        raise RtposeError("--threads is for Ray workers; one input in one process uses every core")
    report = DecodeReport()
    predict(args.model, args.input[0], args.frames, args.output, args.batch_size, args.engine, args.only_labeled,
            continuity=not args.no_continuity, report=report, precision=args.precision, overwrite=args.overwrite)
    return EXIT_FRAMES_MISSING if report.missing else 0
