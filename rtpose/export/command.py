"""``rtpose export MODEL_DIR [MODEL_DIR2] -o EXPORT_DIR [--max-instances N] [--frame-size HxW] [--int8]``.

MODEL_DIR is an rtpose training output, or with MODEL_DIR2 the centroid and
centered-instance directories of a sleap-nn or SLEAP 1.x top-down model
(``rtpose.export.importers``). ``--video`` gives imported models, which carry no
path to their training frames, real frames for the export check and for ``--int8``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtpose.errors import RtposeError

REFERENCE_FRAMES = 3  # real frames whose fp32 outputs the export stores (rtpose.engine.selfcheck)
EXIT_INT8_REFUSED = 3  # the export is written, without the int8 graph asked for (as predict's 3: not all done)


def _check_frame(model_dir: Path):
    """A real frame of the training video for the agreement check, when it is at hand."""
    from rtpose.data.labels import load_labels, resolve_video_path
    from rtpose.data.video import VideoReader

    try:
        info = json.loads((model_dir / "model.json").read_text())
        labels = load_labels(info["labels"])
        frame = labels.labeled_frames[-1]
        with VideoReader(resolve_video_path(frame.video, info["labels"])) as reader:
            return reader.read(frame.frame_idx)
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


def _reference_frames(model_dir: Path, n: int) -> list | None:
    """``n`` validation frames (never trained or calibrated on) as (index, frame) pairs,
    for the export's references; None where the labels or video are not at hand."""
    try:
        _, val = _selection(model_dir)
        chosen = _pick(val, n)
        return list(zip([f.frame_idx for f in chosen], _read(chosen))) or None
    except (RtposeError, OSError, KeyError, ValueError):
        return None


def _video_frames(video: str, n_calibration: int) -> tuple[list, list[tuple[int, object]]]:
    """Frames of a user's video: calibration frames from the first 80% of the frames it
    holds, and (index, frame) check frames from the rest (the quantisation is judged, and
    the references are taken, on frames it did not see). Frames that turn out not to
    decode, or to lie past the real end of the stream, are skipped."""
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
        calibration, checking = [f for _, f in read(reader, calib)], read(reader, check)
    if not calibration and not checking:
        raise RtposeError(f"{video}: no frame could be read")
    return calibration, checking


def main(args: argparse.Namespace) -> int:
    from rtpose.export.onnx_export import export

    dirs = [Path(d) for d in args.model_dir]
    if len(dirs) > 2:
        raise RtposeError(f"rtpose export takes one model directory, or two (centroid + centered instance); "
                          f"got {len(dirs)}")
    from rtpose.export.importers import model_format

    own = [model_format(d) for d in dirs] == ["rtpose"]  # a missing or unknown directory is said first
    video_frames = _video_frames(args.video, args.calibration_frames) if args.video else None
    int8 = None
    if args.int8:
        if video_frames is not None:
            int8 = (video_frames[0], [f for _, f in video_frames[1]])
        elif own:
            int8 = _int8_frames(dirs[0], args.calibration_frames)
        else:
            raise RtposeError("--int8 on an imported model needs --video VIDEO (frames to calibrate on)")
    check = None
    if video_frames:
        check = video_frames[1][0][1] if video_frames[1] else video_frames[0][0]
    elif own:
        check = _check_frame(dirs[0])
    if own:
        references = _reference_frames(dirs[0], REFERENCE_FRAMES)
    else:  # imported models carry no labels: held-out frames of --video serve, or the check frame
        references = _pick(video_frames[1] if video_frames else [], REFERENCE_FRAMES) or None
    spec = export(dirs if len(dirs) > 1 else dirs[0], args.output, args.max_instances, args.frame_size, check, int8,
                  references)
    src = spec.source.get("format", "rtpose")
    print(f"exported {' + '.join(map(str, dirs))} ({src}) -> {args.output}: {spec.frame_height}x{spec.frame_width} "
          f"uint8 frames, up to {spec.max_instances} instances, {spec.n_nodes} nodes, classes {spec.class_names}")
    print(f"graphs: {', '.join(f'{p} {n}' for p, n in spec.graphs.items())}; references: fp32 outputs on video "
          f"frames {spec.extra['references']['video_frames']} (reference.npz)")
    if "quantization" in spec.extra:
        q = spec.extra["quantization"]
        shift = q["shift_vs_fp32_px"]
        print(f"int8: 7-bit weights, calibrated on {q['calibration_frames']} training frames; points move "
              f"{shift['median']:.3f} px (median), {shift['p95']:.3f} px (p95) from fp32 on {shift['frames']} "
              "held-out frames")
    if not spec.class_names and args.max_instances is None:
        print(f"no identity classes: the graph finds up to {spec.max_instances} instance(s) a frame; "
              "give --max-instances N for more")
    refused = spec.extra.get("int8_refused")
    if refused:
        print(f"int8 refused: {refused['reason']}; {args.output} holds the fp32 graph only (it runs on every CPU)",
              file=sys.stderr)
    print(f"check it on any machine: rtpose check -m {args.output}")
    return EXIT_INT8_REFUSED if refused else 0
