"""Reader for SLEAP 1.x training outputs (``best_model.h5`` + ``training_config.json``).

The Keras weights are read with h5py (no TensorFlow): Conv2D kernels ``(kh, kw, in,
out)`` become PyTorch's ``(out, in, kh, kw)``, Conv2DTranspose kernels ``(kh, kw, out,
in)`` become ``(in, out, kh, kw)`` and Dense kernels ``(in, out)`` become ``(out, in)``.
The architecture is the layer graph stored in the file (``model_config``) as SLEAP 1.x
builds it: UNet with the first block at full resolution, 2 convs per block, middle
block, skip features concatenated first, bilinear upsampling or a 3x3 stride-2
Conv2DTranspose with ``padding="same"`` and ReLU, and a ClassVectorsHead (global max
pooling of the middle block, ReLU dense layers, softmax). SLEAP 1.x's optional
OffsetRefinementHead is not run: points are refined by integral regression, as
sleap-nn does for these models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rtpose.errors import RtposeError
from rtpose.paths import clean_path
from rtpose.export.importers.common import (ImportedNet, class_head, confmaps_head, file_hashes, topdown_unet,
                                            sleap_unet)

WEIGHTS = "best_model.h5"
CONFIG = "training_config.json"


def is_legacy_dir(model_dir: Path) -> bool:
    return (model_dir / WEIGHTS).exists() and (model_dir / CONFIG).exists()


def read_h5_layers(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """``{layer: {"weight", "bias"}}`` in PyTorch layout, and ``{layer: Keras class}``."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RtposeError(f"{path}: not a readable Keras HDF5 file ({exc})") from None
    with f:
        if "model_weights" not in f:
            raise RtposeError(f"{path}: no model_weights group (not a Keras model file)")
        classes = {}
        if "model_config" in f.attrs:
            mc = json.loads(f.attrs["model_config"])
            classes = {layer["config"]["name"]: layer["class_name"] for layer in mc["config"]["layers"]}
        layers: dict[str, dict[str, np.ndarray]] = {}
        group = f["model_weights"]
        for name in group:
            found: dict[str, np.ndarray] = {}
            group[name].visititems(lambda n, obj: found.__setitem__(n.split("/")[-1], obj[()])
                                   if hasattr(obj, "shape") else None)
            for key, value in found.items():
                kind = "weight" if key.startswith("kernel") else "bias" if key.startswith("bias") else None
                if kind is None:
                    raise RtposeError(f"{path}: layer {name} holds {key}, which rtpose cannot place "
                                      "(batch normalisation or another layer SLEAP's UNet does not have)")
                if kind == "weight":
                    if value.ndim == 4:  # Conv2D (kh, kw, in, out) and Conv2DTranspose (kh, kw, out, in)
                        value = value.transpose(3, 2, 0, 1)
                    elif value.ndim == 2:  # Dense (in, out)
                        value = value.T
                layers.setdefault(name, {})[kind] = np.ascontiguousarray(value, np.float32)
    return layers, classes


def read(model_dir: Path) -> ImportedNet:
    """Parse a SLEAP 1.x model directory into rtpose modules' terms."""
    import sleap_io.io.skeleton as sio_skeleton

    from rtpose.nn.models import CentroidArch, InstanceArch

    cfg_path = model_dir / CONFIG
    try:
        cfg = json.loads(cfg_path.read_text())
        model, data = cfg["model"], cfg["data"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise RtposeError(f"{cfg_path}: not a SLEAP training config ({type(exc).__name__}: {exc})") from None
    heads, model_type, u = topdown_unet(model_dir, cfg_path, model.get("heads"), model.get("backbone"), "model.heads")
    if int(u.get("stacks") or 1) != 1:
        raise RtposeError(f"{cfg_path}: model.backbone.unet.stacks = {u['stacks']} is not supported (1 only)")
    if u.get("stem_stride"):
        raise RtposeError(f"{cfg_path}: model.backbone.unet.stem_stride = {u['stem_stride']} is not supported")
    prep = data.get("preprocessing", {})
    if prep.get("imagenet_mode"):
        raise RtposeError(f"{cfg_path}: data.preprocessing.imagenet_mode = {prep['imagenet_mode']} is not supported")
    layers, classes = read_h5_layers(model_dir / WEIGHTS)
    first = layers.get("stack0_enc0_conv0", {}).get("weight")
    if first is None:
        raise RtposeError(f"{model_dir / WEIGHTS}: no layer stack0_enc0_conv0 (not a SLEAP UNet)")
    unet, output_stride = sleap_unet(u, int(first.shape[1]), int(first.shape[-1]), 2, "transposed_keras")
    head = heads[model_type]
    confmaps = confmaps_head(heads, model_type, output_stride, cfg_path)
    skeletons = sio_skeleton.decode_skeleton(data["labels"]["skeletons"])
    skeleton = skeletons[0] if isinstance(skeletons, list) else skeletons
    skel_nodes = [n.name for n in skeleton.nodes]
    part_names = list(confmaps.get("part_names") or skel_nodes)
    edges = [(part_names.index(e.source.name), part_names.index(e.destination.name)) for e in skeleton.edges
             if e.source.name in part_names and e.destination.name in part_names]
    sigma = float(confmaps.get("sigma") or 0.0)
    scale = float(prep.get("input_scaling") or 1.0)
    class_names: list[str] = []
    crop = None
    if model_type == "centroid":
        arch: Any = CentroidArch(unet=unet, input_scale=scale, sigma=sigma)
    else:
        crop = (data.get("instance_cropping") or {}).get("crop_size")
        if not crop:
            raise RtposeError(f"{cfg_path}: data.instance_cropping.crop_size is not recorded")
        if scale != 1.0:
            raise RtposeError(f"{cfg_path}: data.preprocessing.input_scaling = {scale} on a centered-instance model "
                              "is not supported (1.0 only)")
        class_names, n_classes, units, n_layers = class_head(cfg_path, model_type, head)
        arch = InstanceArch(unet=unet, crop_size=int(crop), sigma=sigma, n_nodes=len(part_names), n_classes=n_classes,
                            class_units=units, class_layers=n_layers)
    version = cfg.get("sleap_version") or "1.x (not recorded)"
    return ImportedNet(
        model_type=model_type, arch=arch, layers=layers, node_names=part_names, edges=edges, class_names=class_names,
        anchor_part=confmaps.get("anchor_part"), input_scale=scale, crop_size=int(crop) if crop else None,
        max_hw=None,
        source={"format": "sleap-1.x", "version": str(version), "model_type": model_type, "dir": clean_path(model_dir),
                "sha256": file_hashes(model_dir, [WEIGHTS, CONFIG])},
        weights_file=model_dir / WEIGHTS, conventions="sleap", resize="bilinear",
    )
