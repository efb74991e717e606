"""``rtpose export MODEL_DIR -o EXPORT_DIR [--int8] [--max-instances N] [--frame-size HxW]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rtpose.errors import RtposeError

REFERENCE_FRAMES = 3  # real frames whose fp32 outputs the export stores (rtpose.engine.selfcheck)


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


def main(args: argparse.Namespace) -> int:
    from rtpose.export.onnx_export import export

    model_dir = Path(args.model_dir)
    int8 = _int8_frames(model_dir, args.calibration_frames) if args.int8 else None
    spec = export(model_dir, args.output, args.max_instances, args.frame_size, _check_frame(model_dir), int8,
                  _reference_frames(model_dir, REFERENCE_FRAMES))
    print(f"exported {model_dir} -> {args.output}: {spec.frame_height}x{spec.frame_width} uint8 frames, "
          f"up to {spec.max_instances} instances, {spec.n_nodes} nodes, classes {spec.class_names}")
    print(f"graphs: {', '.join(f'{p} {n}' for p, n in spec.graphs.items())}; references: fp32 outputs on video "
          f"frames {spec.extra['references']['video_frames']} (reference.npz)")
    if "quantization" in spec.extra:
        q = spec.extra["quantization"]
        shift = q["shift_vs_fp32_px"]
        print(f"int8: 7-bit weights, calibrated on {q['calibration_frames']} training frames; points move "
              f"{shift['median']:.3f} px (median), {shift['p95']:.3f} px (p95) from fp32 on {shift['frames']} "
              "held-out frames")
    print(f"check it on any machine: rtpose check -m {args.output}")
    return 0
