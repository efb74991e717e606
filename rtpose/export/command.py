"""``rtpose export MODEL_DIR [MODEL_DIR2] -o EXPORT_DIR [--max-instances N] [--frame-size HxW] [--int8]``.

MODEL_DIR is an rtpose training output, or with MODEL_DIR2 the centroid and
centered-instance directories of a sleap-nn or SLEAP 1.x top-down model
(``rtpose.export.importers``). ``--video`` gives imported models, which carry no
path to their training frames, real frames for the export check and for ``--int8``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rtpose.errors import RtposeError


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


def _int8_frames(model_dir: Path, n_calibration: int) -> tuple[list, list]:
    """Calibration frames from the model's training selection, check frames from its
    validation selection: quantisation never sees the frames it is judged on."""
    import numpy as np
    import yaml

    from rtpose.data.labels import load_labels, user_frames
    from rtpose.data.samples import split_frames
    from rtpose.data.video import VideoReader

    info = json.loads((model_dir / "model.json").read_text())
    cfg = yaml.safe_load((model_dir / "config.yaml").read_text())["data"]
    labels_path = info["labels"]
    frames = user_frames(load_labels(labels_path), labels_path)
    train, val = split_frames(frames, cfg.get("train_frames"), cfg.get("val_frames"), cfg.get("val_fraction"),
                              0)
    pick = lambda fs, n: [fs[i] for i in np.linspace(0, len(fs) - 1, min(n, len(fs))).astype(int)] if fs else []
    out = []
    for chosen in (pick(train, n_calibration), pick(val, 20)):
        images = []
        for f in chosen:
            with VideoReader(f.video_path) as reader:
                images.append(reader.read(f.frame_idx))
        out.append(images)
    return out[0], out[1]


def _video_frames(video: str, n_calibration: int) -> tuple[list, list]:
    """Frames of a user's video: calibration frames from the first 80% of the frames it
    holds, check frames from the rest (the quantisation is judged on frames it did not
    see). Frames that turn out not to decode, or to lie past the real end of the stream,
    are skipped."""
    import numpy as np

    from rtpose.data.video import FrameUnavailable, VideoReader

    def read(reader, indices) -> list:
        out = []
        for i in indices:
            try:
                out.append(reader.read(int(i)))
            except FrameUnavailable:
                continue
        return out

    with VideoReader(video) as reader:
        held = list(reader.frame_indices)
        cut = max(1, int(len(held) * 0.8))
        calib = [held[i] for i in np.linspace(0, cut - 1, min(n_calibration, cut)).astype(int)]
        check = [held[i] for i in np.linspace(cut, len(held) - 1, min(20, len(held) - cut)).astype(int)]
        calibration, checking = read(reader, calib), read(reader, check)
    if not calibration and not checking:
        raise RtposeError(f"{video}: no frame could be read")
    return calibration, checking


def main(args: argparse.Namespace) -> int:
    from rtpose.export.onnx_export import export

    dirs = [Path(d) for d in args.model_dir]
    if len(dirs) > 2:
        raise RtposeError(f"rtpose export takes one model directory, or two (centroid + centered instance); "
                          f"got {len(dirs)}")
    own = len(dirs) == 1 and (dirs[0] / "model.json").exists()
    video_frames = _video_frames(args.video, args.calibration_frames) if args.video else None
    int8 = None
    if args.int8:
        if video_frames is not None:
            int8 = video_frames
        elif own:
            int8 = _int8_frames(dirs[0], args.calibration_frames)
        else:
            raise RtposeError("--int8 on an imported model needs --video VIDEO (frames to calibrate on)")
    check = None
    if video_frames:
        check = (video_frames[1] or video_frames[0])[0]
    elif own:
        check = _check_frame(dirs[0])
    spec = export(dirs if len(dirs) > 1 else dirs[0], args.output, args.max_instances, args.frame_size, check, int8)
    src = spec.source.get("format", "rtpose")
    print(f"exported {' + '.join(map(str, dirs))} ({src}) -> {args.output}: {spec.frame_height}x{spec.frame_width} "
          f"uint8 frames, up to {spec.max_instances} instances, {spec.n_nodes} nodes, classes {spec.class_names}")
    if "quantization" in spec.extra:
        q = spec.extra["quantization"]
        shift = q["shift_vs_fp32_px"]
        print(f"int8: calibrated on {q['calibration_frames']} training frames; points move {shift['median']:.3f} px "
              f"(median), {shift['p95']:.3f} px (p95) from fp32 on {shift['frames']} held-out frames")
    return 0
