"""Readers of models trained elsewhere: sleap-nn (``best.ckpt`` + ``training_config.yaml``)
and SLEAP 1.x (``best_model.h5`` + ``training_config.json``), top-down models with a UNet.

``import_topdown`` turns a centroid directory and a centered-instance (or multi-class
top-down) directory into the same ``TopDownPipeline`` our own models export through,
with the imported model's conventions (``rtpose.nn.pipeline``) and the ``info`` the
exporter writes into rtpose.json, including where the weights came from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rtpose.errors import RtposeError
from rtpose.export.importers import sleap_legacy, sleap_nn
from rtpose.export.importers.common import ImportedNet, load_layers
from rtpose.paths import no_such_file

# Defaults of sleap-nn's predictor (inference/layers/configs.py PostprocessConfig).
PEAK_THRESHOLD = 0.2


def model_format(model_dir: Path) -> str:
    """``"rtpose"``, ``"sleap-nn"`` or ``"sleap-1.x"``; RtposeError for anything else."""
    if not model_dir.exists():
        raise RtposeError(no_such_file(model_dir, "model directory"))
    if not model_dir.is_dir():
        raise RtposeError(f"{model_dir}: not a directory")
    if (model_dir / "model.json").exists():
        return "rtpose"
    if sleap_nn.is_sleap_nn_dir(model_dir):
        return "sleap-nn"
    if sleap_legacy.is_legacy_dir(model_dir):
        return "sleap-1.x"
    if (model_dir / "rtpose.json").exists():
        raise RtposeError(f"{model_dir}: is an export already (rtpose.json): use it as it is (-m {model_dir}); "
                          "rtpose export takes the trained model directory it came from")
    inside = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and (
        (p / "model.json").exists() or sleap_nn.is_sleap_nn_dir(p) or sleap_legacy.is_legacy_dir(p)))
    hint = f"; it holds model directories ({', '.join(inside)}): pass those" if inside else ""
    raise RtposeError(f"{model_dir}: not a model directory (expected rtpose's model.json, sleap-nn's "
                      f"best.ckpt + training_config.yaml, or SLEAP's best_model.h5 + training_config.json){hint}")


def read_net(model_dir: Path) -> ImportedNet:
    fmt = model_format(model_dir)
    if fmt == "rtpose":
        raise RtposeError(f"{model_dir}: an rtpose model directory holds both networks; export it on its own")
    return sleap_nn.read(model_dir) if fmt == "sleap-nn" else sleap_legacy.read(model_dir)


def check_pair(centroid: ImportedNet, instance: ImportedNet) -> None:
    """Refuse a centroid and an instance model that cannot belong together.

    Both SLEAP 1.x and sleap-nn configs record the training skeleton (and the centroid's
    anchor part, where one was set). The instance network's crops are centred on the
    centroid model's peaks, so its anchor part must be a node of the instance model's
    skeleton; and two skeletons without a node name in common come from different
    projects. Skeletons that only partly differ (a node added later) pass.

    Raises:
        RtposeError: one line naming both directories and what does not match.
    """
    c_dir, i_dir = centroid.source["dir"], instance.source["dir"]
    shown = lambda names: ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    if centroid.anchor_part and centroid.anchor_part not in instance.node_names:
        raise RtposeError(f"{c_dir}: its anchor part {centroid.anchor_part!r} is not a node of the instance model "
                          f"{i_dir} (nodes {shown(instance.node_names)}): the two models are not of one project")
    if centroid.node_names and not set(centroid.node_names) & set(instance.node_names):
        raise RtposeError(f"{c_dir} (nodes {shown(centroid.node_names)}) and {i_dir} (nodes "
                          f"{shown(instance.node_names)}) share no skeleton node: the two models are not of one "
                          "project")


def import_topdown(model_dirs: list[Path], max_instances: int | None = None):
    """The eval-mode pipeline of a foreign centroid + centered-instance pair, and the
    exporter's ``info`` for it. Raises RtposeError with one line for anything rtpose
    cannot run (the model type, a layer whose weights do not fit the config...)."""
    from rtpose.nn.models import arch_to_dict
    from rtpose.nn.pipeline import TopDownPipeline

    nets = [read_net(Path(d)) for d in model_dirs]
    by_type = {n.model_type: n for n in nets}
    centroid = by_type.get("centroid")
    instance = by_type.get("multi_class_topdown") or by_type.get("centered_instance")
    if len(nets) != 2 or centroid is None or instance is None:
        got = " and ".join(f"{n.model_type} ({n.source['dir']})" for n in nets)
        raise RtposeError(f"a top-down export needs a centroid model and a centered_instance or multi_class_topdown "
                          f"model; got {got}")
    check_pair(centroid, instance)
    c_net = centroid.arch.build()
    load_layers(c_net, centroid)
    i_net = instance.arch.build()
    load_layers(i_net, instance)
    n = max_instances or max(len(instance.class_names), 1)
    try:
        pipeline = TopDownPipeline(
            c_net, i_net, input_scale=centroid.input_scale, crop_size=instance.crop_size, max_instances=n,
            centroid_threshold=PEAK_THRESHOLD, refinement="integral_raw", conventions=instance.conventions,
            resize=centroid.resize,
        )
    except ValueError as exc:
        raise RtposeError(f"{instance.source['dir']}: {exc}") from None
    pipeline.eval()
    sources = {"centroid": centroid.source, "instance": instance.source}
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]
    max_hw = centroid.max_hw or instance.max_hw
    info = {
        "node_names": instance.node_names, "edges": instance.edges, "class_names": instance.class_names,
        "input_scale": centroid.input_scale, "crop_size": instance.crop_size,
        "centroid_output_stride": centroid.arch.unet.output_stride,
        "instance_output_stride": instance.arch.unet.output_stride,
        "anchor_part": centroid.anchor_part or instance.anchor_part or "",
        "centroid_threshold": PEAK_THRESHOLD, "point_threshold": PEAK_THRESHOLD, "refinement": "integral_raw",
        "config_hash": digest, "max_instances": n,
        "frame_height": max_hw[0] if max_hw else None, "frame_width": max_hw[1] if max_hw else None,
        "architecture": {"centroid": arch_to_dict(centroid.arch), "instance": arch_to_dict(instance.arch),
                         "pipeline": {"conventions": instance.conventions, "resize": centroid.resize}},
        "source": {"format": instance.source["format"], "networks": sources,
                   "ignored_layers": sorted(set(centroid.ignored_layers + instance.ignored_layers))},
    }
    return pipeline, info
