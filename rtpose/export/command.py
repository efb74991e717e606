"""``rtpose export MODEL_DIR [MODEL_DIR2] -o EXPORT_DIR [--max-instances N] [--frame-size HxW] [--int8] [--overwrite]``.

MODEL_DIR is an rtpose training output, or with MODEL_DIR2 the centroid and
centered-instance directories of a sleap-nn or SLEAP 1.x top-down model
(``rtpose.export.importers``). ``--video`` gives imported models, which carry no
path to their training frames, real frames for the export check and for ``--int8``.
An EXPORT_DIR that already holds an export (``rtpose.json``) is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtpose.errors import RtposeError
from rtpose.paths import check_writable, clean_path, shell_path, some_names
from rtpose.export.spec import INT8_MODEL_FILE, MODEL_FILE, REFERENCE_FILE

REFERENCE_FRAMES = 3  # real frames whose fp32 outputs the export stores (rtpose.engine.selfcheck)
EXIT_INT8_REFUSED = 3  # the export is written, without the int8 graph asked for (as predict's 3: not all done)


def _check_frame(model_dir: Path):
    """A real frame of the training video for the agreement check, when it is at hand."""
    found = _last_labelled_frame(model_dir)
    return found[1] if found else None


def _last_labelled_frame(model_dir: Path):
    """``(index, frame)``: the training labels' last labelled frame, or None where the
    labels or video are not at hand."""
    from rtpose.data.labels import load_labels, resolve_video_path
    from rtpose.data.video import VideoReader

    try:
        info = json.loads((model_dir / "model.json").read_text())
        labels = load_labels(info["labels"])
        frame = labels.labeled_frames[-1]
        with VideoReader(resolve_video_path(frame.video, info["labels"])) as reader:
            return frame.frame_idx, reader.read(frame.frame_idx)
    except (RtposeError, OSError, KeyError, IndexError, ValueError):
        return None


def _selection(model_dir: Path) -> tuple[list, list]:
    """The model's training and validation frames (rtpose.data.samples.split_frames)."""
    import yaml

    from rtpose.data.labels import load_labels, user_frames
    from rtpose.data.samples import split_frames

    info = json.loads((model_dir / "model.json").read_text())
    cfg = yaml.safe_load((model_dir / "config.yaml").read_text())["data"]
    labels_path = info["labels"]
    frames = user_frames(load_labels(labels_path), labels_path)
    return split_frames(frames, cfg.get("train_frames"), cfg.get("val_frames"), cfg.get("val_fraction"), 0)


def _pick(frames: list, n: int) -> list:
    import numpy as np

    return [frames[i] for i in np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)] if frames else []


def _read(chosen: list) -> list:
    from rtpose.data.video import VideoReader

    images = []
    for f in chosen:
        with VideoReader(f.video_path) as reader:
            images.append(reader.read(f.frame_idx))
    return images


def _int8_frames(model_dir: Path, n_calibration: int) -> tuple[list, list]:
    """Calibration frames from the model's training selection, check frames from its
    validation selection: quantisation never sees the frames it is judged on."""
    train, val = _selection(model_dir)
    return _read(_pick(train, n_calibration)), _read(_pick(val, 20))


def _reference_frames(model_dir: Path, n: int) -> tuple[list, str] | None:
    """``n`` validation frames (never trained or calibrated on) as (index, frame) pairs,
    for the export's references, and what they are in words; None where the labels or
    video are not at hand."""
    try:
        _, val = _selection(model_dir)
        chosen = _pick(val, n)
        pairs = list(zip([f.frame_idx for f in chosen], _read(chosen)))
    except (RtposeError, OSError, KeyError, ValueError):
        return None
    if not pairs:
        return None
    videos = sorted({Path(f.video_path).name for f in chosen})
    return pairs, (f"validation frames {', '.join(str(i) for i, _ in pairs)} of {' and '.join(videos)} "
                   "(never trained on)")


def _video_frames(video: str, n_calibration: int) -> tuple[list, list[tuple[int, object]], tuple[int, int]]:
    """Frames of a user's video: (index, frame) calibration frames from the first 80% of
    the frames it holds, (index, frame) check frames from the rest (the quantisation is
    judged, and the references are taken, on frames it did not see), and its frame size
    ``(height, width)``. Frames that turn out not to decode, or to lie past the real end
    of the stream, are skipped."""
    import numpy as np

    from rtpose.data.video import FrameUnavailable, VideoReader

    def read(reader, indices) -> list[tuple[int, object]]:
        out = []
        for i in indices:
            try:
                out.append((int(i), reader.read(int(i))))
            except FrameUnavailable:
                continue
        return out

    with VideoReader(video) as reader:
        held = list(reader.frame_indices)
        cut = max(1, int(len(held) * 0.8))
        calib = [held[i] for i in np.linspace(0, cut - 1, min(n_calibration, cut)).astype(int)]
        check = [held[i] for i in np.linspace(cut, len(held) - 1, min(20, len(held) - cut)).astype(int)]
        calibration, checking = read(reader, calib), read(reader, check)
        shape = reader.shape
    if not calibration and not checking:
        raise RtposeError(f"{video}: no frame could be read")
    return calibration, checking, shape


def _video_references(video: str, frames: tuple[list, list, tuple[int, int]]) -> tuple[list, str]:
    """Reference frames of ``--video`` and what they are in words: held-out frames (the
    last 20%, never calibrated on), or the calibration frames of a video too short to
    hold any back (a one-frame package)."""
    calibration, checking, _ = frames
    name = Path(video).name
    if checking:
        chosen = _pick(checking, REFERENCE_FRAMES)
        return chosen, (f"frames {', '.join(str(i) for i, _ in chosen)} of {name} (from its last 20%, "
                        "never calibrated on)")
    chosen = _pick(calibration, REFERENCE_FRAMES)
    if len(calibration) == 1:
        return chosen, f"frame {chosen[0][0]} of {name} (the one frame it holds)"
    return chosen, (f"frames {', '.join(str(i) for i, _ in chosen)} of {name} (it holds too few frames to keep "
                    "some back: --int8 also calibrates on them)")


def claim_export_dir(export_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier export (a directory holding ``rtpose.json``), or to write
    into a folder of other files, unless ``--overwrite`` was given; said before any work, so
    nothing in it is touched.

    Raises:
        RtposeError: ``export_dir`` is a file; it holds an export, or other files, and
            ``overwrite`` is False.
    """
    spec_path = export_dir / "rtpose.json"
    if export_dir.exists() and not export_dir.is_dir():
        raise RtposeError(f"-o {export_dir}: is a file; an export is a folder (give a new one)")
    if export_dir.is_dir() and not spec_path.exists() and not overwrite:
        own = {MODEL_FILE, INT8_MODEL_FILE, REFERENCE_FILE, "MODEL_CARD.md"}  # an export's, left by an earlier one
        others = sorted(p.name for p in export_dir.iterdir() if not p.name.startswith(".") and p.name not in own
                        and not p.name.endswith(".onnx.data"))
        if others:  # a user's folder: the graphs would land among its files
            raise RtposeError(f"-o {export_dir}: a folder holding other files ({some_names(others, 4)}); an export "
                              "gets a folder of its own: give a new or empty one (--overwrite writes into it anyway)")
    if overwrite or not spec_path.exists():
        return
    try:
        source = json.loads(spec_path.read_text()).get("source") or {}
        dirs = [source["dir"]] if "dir" in source else [n["dir"] for n in source.get("networks", []) if "dir" in n]
        held = f" (an export of {' + '.join(dirs)})" if dirs else ""
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        held = ""
    raise RtposeError(f"{export_dir} already holds an export{held}: give another -o, or --overwrite to replace it")


def main(args: argparse.Namespace) -> int:
    from rtpose.engine.selfcheck import describe_references
    from rtpose.export.onnx_export import export

    dirs = [Path(d) for d in args.model_dir]
    for flag, value in (("--max-instances", args.max_instances), ("--calibration-frames", args.calibration_frames)):
        if value is not None and value < 1:
            raise RtposeError(f"{flag} must be at least 1 (got {value})")
    if len(dirs) > 2:
        raise RtposeError(f"rtpose export takes one model directory, or two (centroid + centered instance); "
                          f"got {len(dirs)}")
    claim_export_dir(Path(args.output), getattr(args, "overwrite", False))
    check_writable(Path(args.output))  # the folder, or the nearest one above that it would be made in
    from rtpose.export.importers import model_format

    own = [model_format(d) for d in dirs] == ["rtpose"]  # a missing or unknown directory is said first
    video_frames = _video_frames(args.video, args.calibration_frames) if args.video else None
    int8 = None
    if args.int8:
        if video_frames is not None:
            int8 = ([f for _, f in video_frames[0]], [f for _, f in video_frames[1]])
        elif own:
            int8 = _int8_frames(dirs[0], args.calibration_frames)
        else:
            raise RtposeError("--int8 on an imported model needs --video VIDEO (frames to calibrate on)")
    check, references = None, None  # references: ((index, frame) pairs, what they are in words)
    if video_frames:
        check = (video_frames[1] or video_frames[0])[0][1]
        references = _video_references(args.video, video_frames)
    elif own:
        training_frame = _last_labelled_frame(dirs[0])
        check = training_frame[1] if training_frame else None
        references = _reference_frames(dirs[0], REFERENCE_FRAMES)
        if references is None and training_frame:
            references = [training_frame], f"frame {training_frame[0]} of the training video (its last labelled frame)"
    spec = export(dirs if len(dirs) > 1 else dirs[0], args.output, args.max_instances, args.frame_size, check, int8,
                  references[0] if references else None, references[1] if references else None,
                  (args.video, video_frames[2]) if video_frames else None)
    src = spec.source.get("format", "rtpose")
    out = clean_path(args.output)  # as rtpose.json's source: absolute, no ..
    print(f"exported {' + '.join(clean_path(d) for d in dirs)} ({src}) -> {out}: "
          f"{spec.frame_height}x{spec.frame_width} "
          f"uint8 frames, up to {spec.max_instances} instance{'s' if spec.max_instances != 1 else ''}, "
          f"{spec.n_nodes} nodes, "
          f"classes {', '.join(spec.class_names) or 'none'}")
    print(f"graphs: {', '.join(f'{p} {n}' for p, n in spec.graphs.items())}; references (reference.npz): fp32 "
          f"outputs on {describe_references(spec)}")
    distinct = spec.architecture.get("pipeline", {}).get("distinct_nodes")
    if distinct:
        print(f"distinct nodes (one place each in an animal; instance.distinct_nodes): {', '.join(distinct['names'])}; "
              f"the weaker of two within {distinct['min_distance_px']:g} px takes its next peak")
    if "quantization" in spec.extra:
        q = spec.extra["quantization"]
        shift = q["shift_vs_fp32_px"]
        n_cal = q["calibration_frames"]
        calibrated = f"{n_cal} frame{'s' if n_cal != 1 else ''} of {Path(args.video).name}" if video_frames else \
            f"{n_cal} training frame{'s' if n_cal != 1 else ''}"
        checked = f"{shift['frames']} held-out frames"
        if video_frames and not video_frames[1]:
            checked = (f"the same {shift['frames']} frame(s): {Path(args.video).name} holds too few frames to keep "
                       "any out, so this is no check on unseen frames")
        print(f"int8: 7-bit weights, calibrated on {calibrated}; points move {shift['median']:.3f} px (median), "
              f"{shift['p95']:.3f} px (p95) from fp32 on {checked}")
    if not spec.class_names and args.max_instances is None:
        print(f"no identity classes: the graph finds up to {spec.max_instances} instance(s) a frame; "
              "give --max-instances N for more")
    refused = spec.extra.get("int8_refused")
    if refused:
        print(f"int8 refused: {refused['reason']}; {out} holds the fp32 graph only (it runs on every CPU)",
              file=sys.stderr)
    print(f"check it on any machine: rtpose check -m {shell_path(out)}")
    return EXIT_INT8_REFUSED if refused else 0
