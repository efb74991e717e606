"""``rtpose export MODEL_DIR -o EXPORT_DIR [--max-instances N] [--frame-size HxW]``."""

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


def main(args: argparse.Namespace) -> int:
    from rtpose.export.onnx_export import export

    model_dir = Path(args.model_dir)
    int8 = _int8_frames(model_dir, args.calibration_frames) if args.int8 else None
    spec = export(model_dir, args.output, args.max_instances, args.frame_size, _check_frame(model_dir), int8)
    print(f"exported {model_dir} -> {args.output}: {spec.frame_height}x{spec.frame_width} uint8 frames, "
          f"up to {spec.max_instances} instances, {spec.n_nodes} nodes, classes {spec.class_names}")
    if "quantization" in spec.extra:
        q = spec.extra["quantization"]
        shift = q["shift_vs_fp32_px"]
        print(f"int8: calibrated on {q['calibration_frames']} training frames; points move {shift['median']:.3f} px "
              f"(median), {shift['p95']:.3f} px (p95) from fp32 on {shift['frames']} held-out frames")
    return 0
