"""Trained model directory -> export directory (rtpose.export.spec lists its files).

The two networks and all the steps between them become one ONNX graph (see
rtpose.nn.pipeline). BatchNorm is folded into the convolutions first, so the graph's
weights are plain conv kernels whose initializer names equal the torch parameter names;
the torch-cuda engine rebuilds the same modules from ``architecture`` and reloads those
weights by name from the fp32 ``model.onnx``. With ``--int8`` an int8 graph is written
beside it (rtpose.export.quantize). The export checks itself before the directory is
written: ONNX Runtime must reproduce torch's points on a real frame, the int8 graph must
stay near fp32 on held-out frames, and the fp32 graph's outputs on a few real frames are
stored as the references every engine load reproduces (rtpose.engine.selfcheck).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from rtpose import __version__
from rtpose.errors import RtposeError
from rtpose.paths import clean_path
from rtpose.export.spec import INPUT_NAME, INT8_MODEL_FILE, MODEL_FILE, OUTPUT_NAMES, REFERENCE_FILE, ExportSpec
from rtpose.nn.models import centroid_arch_from_dict, instance_arch_from_dict
from rtpose.nn.pipeline import TopDownPipeline
from rtpose.nn.unet import fold_batchnorm

MODEL_INFO = "model.json"  # written by rtpose.train.trainer
OPSET = 17


def _load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise RtposeError(f"{path}: missing (train the model first, or point at a model directory)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RtposeError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def build_pipeline(model_dir: str | Path | list, max_instances: int | None = None) -> tuple[TopDownPipeline, dict]:
    """The eval-mode, BatchNorm-folded pipeline of a model directory, and its model.json.

    ``model_dir`` may also be two directories of a model trained elsewhere (sleap-nn or
    SLEAP 1.x: centroid + centered-instance, any order; ``rtpose.export.importers``)."""
    dirs = [Path(d) for d in model_dir] if isinstance(model_dir, (list, tuple)) else [Path(model_dir)]
    from rtpose.export.importers import import_topdown, model_format

    formats = [model_format(d) for d in dirs]
    if formats != ["rtpose"]:
        if "rtpose" in formats:
            raise RtposeError(f"{dirs[formats.index('rtpose')]}: an rtpose model directory holds both networks; "
                              "export it on its own")
        if len(dirs) != 2:
            from rtpose.export.importers import read_net

            read_net(dirs[0])  # an unsupported model type is the first thing to say
            raise RtposeError(f"{dirs[0]}: a {formats[0]} model is one network; pass two model directories: the "
                              "centroid, and the centered-instance (centered_instance) or multi-class top-down "
                              "(multi_class_topdown) model")
        return import_topdown(dirs, max_instances)
    model_dir = dirs[0]
    info_path = model_dir / MODEL_INFO
    if not info_path.exists():
        raise RtposeError(f"{model_dir}: no {MODEL_INFO}; not a model directory written by `rtpose train`")
    info = json.loads(info_path.read_text())
    distinct = run_distinct_nodes(model_dir, info)
    if distinct:
        info["distinct_nodes"] = distinct
    else:
        info.pop("distinct_nodes", None)
    c_ckpt = _load_checkpoint(model_dir / "centroid" / "best.pt")
    i_ckpt = _load_checkpoint(model_dir / "instance" / "best.pt")
    centroid = centroid_arch_from_dict(c_ckpt["arch"]).build()
    centroid.load_state_dict(c_ckpt["state_dict"])
    instance = instance_arch_from_dict(i_ckpt["arch"]).build()
    instance.load_state_dict(i_ckpt["state_dict"])
    n = max_instances or max(len(info["class_names"]), int(info.get("max_instances", 1)))
    pipeline = TopDownPipeline(
        centroid, instance, input_scale=info["input_scale"], crop_size=info["crop_size"], max_instances=n,
        centroid_threshold=info["centroid_threshold"], refinement=info["refinement"],
        distinct_nodes=info.get("distinct_nodes"),
    )
    pipeline.eval()
    fold_batchnorm(pipeline)
    info["architecture"] = {"centroid": c_ckpt["arch"], "instance": i_ckpt["arch"]}
    if info.get("distinct_nodes"):  # read back by pipeline_from_architecture (torch-cuda)
        info["architecture"]["pipeline"] = {"distinct_nodes": info["distinct_nodes"]}
    from rtpose.export.importers.common import file_hashes

    info["source"] = {"format": "rtpose", "version": __version__, "dir": clean_path(model_dir),
                      "sha256": file_hashes(model_dir, ["centroid/best.pt", "instance/best.pt", "config.yaml"])}
    return pipeline, info


def run_distinct_nodes(model_dir: Path, info: dict) -> dict | None:
    """The run's ``instance.distinct_nodes`` as the pipeline takes it, or None.

    It changes inference only, so the run's ``config.yaml`` (which a user edits to add
    it to a trained run) is read at every export, through the config layer as ``rtpose
    train`` reads it (its lines, its messages); model.json's copy serves a run without a
    config.yaml.

    Raises:
        ConfigError: ``config.yaml:LINE: instance.distinct_nodes...: ...`` for a malformed
            section or a node the model lacks.
    """
    from rtpose.config import ConfigError, describe_errors, load_yaml, validate
    from rtpose.train.checks import distinct_node_problems
    from rtpose.train.config import DistinctNodesConfig

    config = model_dir / "config.yaml"
    if not config.exists():
        return info.get("distinct_nodes")
    tree, lines = load_yaml(config, "training config")
    instance = tree.get("instance")
    section = instance.get("distinct_nodes") if isinstance(instance, dict) else None
    if section is None:
        return None
    where = ("instance", "distinct_nodes")
    distinct = validate(DistinctNodesConfig, section, config, lines, prefix=where)
    nodes = list(info["node_names"])
    problems = distinct_node_problems(distinct, nodes)  # as a training checks it
    if problems:
        errors = [{"loc": loc, "msg": msg, "type": "cross_check"} for loc, msg in problems]
        raise ConfigError(describe_errors(errors, config, lines, prefix=where))
    return distinct.to_info(nodes)


def spec_from_info(info: dict, max_instances: int, frame_hw: tuple[int, int]) -> ExportSpec:
    return ExportSpec(
        node_names=info["node_names"], edges=[tuple(e) for e in info["edges"]], class_names=info["class_names"],
        frame_height=frame_hw[0], frame_width=frame_hw[1], input_scale=info["input_scale"],
        crop_size=info["crop_size"], centroid_output_stride=info["centroid_output_stride"],
        instance_output_stride=info["instance_output_stride"], anchor_part=info["anchor_part"],
        centroid_threshold=info["centroid_threshold"], point_threshold=info["point_threshold"],
        max_instances=max_instances, config_hash=info["config_hash"], refinement=info["refinement"],
        architecture=info["architecture"], rtpose_version=__version__, source=info.get("source", {}),
        animal_size_px=info.get("animal_size_px"),
    )


def parse_frame_size(text: str | None, info: dict, video_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """The frame size ``(height, width)`` to export for: ``--frame-size`` (``text``), else
    the size the model records (rtpose: its training video; sleap-nn: max_height and
    max_width), else the frame size of ``--video`` (``video_hw``).

    Raises:
        RtposeError: a malformed or tiny ``--frame-size``, or no size from any source.
    """
    if not text:
        if info.get("frame_height") and info.get("frame_width"):
            return int(info["frame_height"]), int(info["frame_width"])
        if video_hw is not None:
            return int(video_hw[0]), int(video_hw[1])
        raise RtposeError("the model does not record its frame size; pass --frame-size HxW, or --video VIDEO "
                          "of the setup (its frame size is used)")
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RtposeError(f"--frame-size {text!r}: expected HxW, e.g. 1024x1024") from None
    if h < 32 or w < 32:
        raise RtposeError(f"--frame-size {text!r}: too small")
    return h, w


def export(model_dir: str | Path | list, export_dir: str | Path, max_instances: int | None = None,
           frame_size: str | None = None, check_frame: np.ndarray | None = None,
           int8_frames: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
           reference_frames: list[tuple[int, np.ndarray]] | None = None, references_note: str | None = None,
           video: tuple[str, tuple[int, int]] | None = None) -> ExportSpec:
    """Write ``export_dir``; returns its spec.

    Args:
        model_dir: a model directory written by ``rtpose train``, or the two directories
            of a sleap-nn or SLEAP 1.x top-down model (see ``build_pipeline``).
        export_dir: created or overwritten (its graphs, references and spec).
        max_instances: instances per frame (default: the model's classes).
        frame_size: ``HxW`` the graph takes (default: the size the model records, else
            ``video``'s; see ``parse_frame_size``).
        check_frame: a real ``(H, W)`` uint8 frame for the torch/ONNX Runtime agreement
            check (a blank frame checks nothing useful).
        int8_frames: (calibration frames, check frames) to also write an int8 graph
            (rtpose.export.quantize); None: fp32 only. An int8 graph that fails its
            checks is not written; ``spec.extra["int8_refused"]`` says why.
        reference_frames: ``(video frame index, (H, W) uint8 frame)`` pairs whose fp32
            outputs become the export's references; default: ``check_frame``.
        references_note: what the reference frames are, in words (``rtpose.json``
            ``extra.references.description``; ``describe_references`` says it).
        video: ``(path, (height, width))`` of the ``--video`` the frames come from; its
            frames must fit the exported size as engines take them
            (``rtpose.engine.base.check_frame_size``), as they are never cut.

    Raises:
        RtposeError: the model directory is incomplete, ``video``'s frames do not fit
            the frame size, or a check fails.
    """
    import onnxruntime as ort

    from rtpose.engine.selfcheck import REDUCED_BOUNDS, make_references, run_check, save_references

    pipeline, info = build_pipeline(model_dir, max_instances)
    h, w = parse_frame_size(frame_size, info, video[1] if video else None)
    trained_hw = (info.get("frame_height"), info.get("frame_width"))
    if info.get("source", {}).get("format") == "sleap-nn" and all(trained_hw) and (h, w) != trained_hw:
        raise RtposeError(f"--frame-size {h}x{w}: this sleap-nn model was trained on {trained_hw[0]}x{trained_hw[1]} "
                          "frames (preprocessing.max_height/max_width); rtpose runs it at that size only")
    spec = spec_from_info(info, pipeline.max_instances, (h, w))
    if video is not None:
        _check_video_fits(video, spec, "--frame-size" if frame_size else "recorded in the model")
    if check_frame is None:
        check_frame = np.zeros((h, w), np.uint8)
    fit = lambda f: _fit(f, h, w)
    frame = torch.from_numpy(fit(check_frame))[None, None]
    export_dir = Path(export_dir)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / MODEL_FILE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python ints are expected
            torch.onnx.export(
                pipeline, (frame,), str(onnx_path), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
                do_constant_folding=True,
            )
        with torch.no_grad():
            expected = [t.numpy() for t in pipeline(frame)]
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: frame.numpy()})
        valid = expected[4] & got[4]
        if not np.array_equal(expected[4], got[4]):
            raise RtposeError("export check failed: ONNX Runtime finds other instances than torch")
        if valid.any():
            diff = np.nanmax(np.abs(expected[0][valid] - got[0][valid]))
            if diff > 0.1:
                raise RtposeError(f"export check failed: ONNX Runtime points differ from torch by {diff:.3f} px")
        run_fp32 = lambda batch: dict(zip(OUTPUT_NAMES, session.run(None, {INPUT_NAME: batch})))
        if not reference_frames:
            reference_frames = [(-1, check_frame)]
            references_note = references_note or ("the check frame" if check_frame.any() else
                                                  "a blank frame (no real frame at hand: give --video VIDEO "
                                                  "for a self-check on real frames)")
        refs = make_references(run_fp32, [fit(f) for _, f in reference_frames], [i for i, _ in reference_frames],
                               spec)
        spec.extra["references"] = {"file": REFERENCE_FILE, "video_frames": refs.frame_indices.tolist()}
        if references_note:
            spec.extra["references"]["description"] = references_note
        int8_path = None
        if int8_frames is not None:
            from rtpose.export.quantize import MAX_MEDIAN_SHIFT_PX, MAX_WEIGHT, point_shift_px, quantize_int8

            calibration, check = int8_frames
            int8_path = Path(tmp) / INT8_MODEL_FILE
            quantize_int8(onnx_path, int8_path, [fit(f) for f in calibration])
            shift = point_shift_px(onnx_path, int8_path, [fit(f) for f in check or calibration[:10]])
            own = None
            if shift["median"] > MAX_MEDIAN_SHIFT_PX:
                refused = f"points moved {shift['median']:.2f} px (median) from fp32 (bound {MAX_MEDIAN_SHIFT_PX})"
            else:
                int8_session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
                own = run_check(lambda batch: dict(zip(OUTPUT_NAMES, int8_session.run(None, {INPUT_NAME: batch}))),
                                refs, spec, REDUCED_BOUNDS, "int8")
                refused = None if own.passed else f"on the reference frames, {'; '.join(own.failures)}"
            if refused:  # the fp32 graph is still written: nothing the user can run is lost
                spec.extra["int8_refused"] = {"reason": refused, "shift_vs_fp32_px": shift}
                int8_path = None
        if int8_path is not None:
            spec.extra["quantization"] = {"type": "int8 static QDQ, Conv (Relu folded) except the confidence-map outputs, "
                                                  "per-channel 7-bit weights (|w| <= 64), uint8 activations, "
                                                  "percentile calibration",
                                          "max_abs_weight": MAX_WEIGHT,
                                          "calibration_frames": len(calibration),
                                          "shift_vs_fp32_px": shift,
                                          "self_check_at_export": own.to_dict()}
            spec.graphs["int8"] = INT8_MODEL_FILE
        export_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(onnx_path, export_dir / MODEL_FILE)
        if int8_path is not None:
            shutil.copy(int8_path, export_dir / INT8_MODEL_FILE)
        else:
            (export_dir / INT8_MODEL_FILE).unlink(missing_ok=True)  # a stale one from an earlier export
        save_references(refs, export_dir)
    spec.save(export_dir)
    return spec


def _check_video_fits(video: tuple[str, tuple[int, int]], spec: ExportSpec, size_from: str) -> None:
    """Refuse a ``--video`` whose frames the export would not take (one line, both sizes)."""
    from rtpose.engine.base import check_frame_size

    path, (vh, vw) = video
    try:
        check_frame_size(vh, vw, spec, path)
    except RtposeError:
        raise RtposeError(f"--video {path}: frames are {vh}x{vw} but the export is for {spec.frame_height}x"
                          f"{spec.frame_width} frames ({size_from}); pass --frame-size {vh}x{vw} to export for "
                          "its frames, or a video of the setup the model is for") from None


def _fit(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """A frame cut or zero-padded to exactly ``(h, w)`` uint8."""
    frame = np.asarray(frame)
    if frame.shape == (h, w):
        return np.ascontiguousarray(frame)
    out = np.zeros((h, w), np.uint8)
    fh, fw = min(h, frame.shape[0]), min(w, frame.shape[1])
    out[:fh, :fw] = frame[:fh, :fw]
    return out
