"""Reader for sleap-nn training outputs (``best.ckpt`` + ``training_config.yaml``).

Conventions learnt from sleap-nn 0.3.5's source (it is GPL-3.0 and never imported):
a UNet whose first block runs at full resolution, a middle block of
``convs_per_block - 1`` expand convs and one contract conv at the deepest level, skip
features concatenated before the upsampled ones, channel counts
``int(filters * filters_rate**level)``, 1x1 confidence-map heads on the decoder output,
and a class head of global max pooling over the middle block, ``num_fc_layers`` dense
layers with ReLU and a softmax layer. Inference scales uint8 frames with torchvision's
antialiased resize, divides by 255, finds peaks above 0.2 and refines them by integral
regression over 5x5 patches (``rtpose.nn.pipeline`` "sleap" conventions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtpose.errors import RtposeError
from rtpose.paths import clean_path
from rtpose.export.importers.common import (ImportedNet, class_head, confmaps_head, file_hashes, topdown_unet,
                                            sleap_unet)

CHECKPOINT = "best.ckpt"
CONFIG = "training_config.yaml"


def is_sleap_nn_dir(model_dir: Path) -> bool:
    return (model_dir / CHECKPOINT).exists() and (model_dir / CONFIG).exists()


def _get(d: dict, path: str, where: Path) -> Any:
    cur: Any = d
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise RtposeError(f"{where}: missing field {path}")
        cur = cur[key]
    return cur


def read(model_dir: Path) -> ImportedNet:
    """Parse a sleap-nn model directory into rtpose modules' terms (no weights copied yet)."""
    import torch
    import yaml

    from rtpose.nn.models import CentroidArch, InstanceArch

    cfg_path = model_dir / CONFIG
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as exc:
        raise RtposeError(f"{cfg_path}: not valid YAML ({exc})") from None
    heads, model_type, u = topdown_unet(model_dir, cfg_path, _get(cfg, "model_config.head_configs", cfg_path),
                                        _get(cfg, "model_config.backbone_config", cfg_path),
                                        "model_config.head_configs")
    if int(u.get("stacks") or 1) != 1:
        raise RtposeError(f"{cfg_path}: model_config.backbone_config.unet.stacks = {u['stacks']} is not supported (1 only)")
    if u.get("stem_stride"):
        raise RtposeError(f"{cfg_path}: model_config.backbone_config.unet.stem_stride = {u['stem_stride']} "
                          "is not supported (stem blocks)")
    unet, output_stride = sleap_unet(u, int(u.get("in_channels") or 1), int(u.get("kernel_size") or 3),
                                     int(u.get("convs_per_block") or 2), "transposed")
    head = heads[model_type]
    confmaps = confmaps_head(heads, model_type, output_stride, cfg_path)
    prep = _get(cfg, "data_config.preprocessing", cfg_path)
    skeleton = (_get(cfg, "data_config.skeletons", cfg_path) or [{}])[0]
    skel_nodes = [n["name"] for n in skeleton.get("nodes", [])]
    part_names = list(confmaps.get("part_names") or skel_nodes)
    edges = [(part_names.index(e["source"]["name"]), part_names.index(e["destination"]["name"]))
             for e in skeleton.get("edges", [])
             if e["source"]["name"] in part_names and e["destination"]["name"] in part_names]
    class_names: list[str] = []
    sigma = float(confmaps.get("sigma") or 0.0)
    if model_type == "centroid":
        arch: Any = CentroidArch(unet=unet, input_scale=float(prep.get("scale") or 1.0), sigma=sigma)
        crop = None
    else:
        crop = prep.get("crop_size")
        if not crop:
            raise RtposeError(f"{cfg_path}: data_config.preprocessing.crop_size is not recorded; "
                              "rtpose needs the crop size the model was trained with")
        if (prep.get("crop_mode") or "fixed") != "fixed":
            raise RtposeError(f"{cfg_path}: data_config.preprocessing.crop_mode = {prep['crop_mode']} is not "
                              "supported (fixed crops only)")
        if float(prep.get("scale") or 1.0) != 1.0:
            raise RtposeError(f"{cfg_path}: data_config.preprocessing.scale = {prep['scale']} on a centered-instance "
                              "model is not supported (1.0 only)")
        class_names, n_classes, units, layers = class_head(cfg_path, model_type, head)
        arch = InstanceArch(unet=unet, crop_size=int(crop), sigma=sigma, n_nodes=len(part_names), n_classes=n_classes,
                            class_units=units, class_layers=layers)
    ckpt_path = model_dir / CHECKPOINT
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RtposeError(f"{ckpt_path}: not a readable checkpoint ({type(exc).__name__})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise RtposeError(f"{ckpt_path}: no state_dict")
    layers_out: dict[str, dict] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) < 2 or parts[-1] not in ("weight", "bias"):
            continue
        name = next((p for p in reversed(parts[:-1]) if not p.isdigit()), parts[-2])
        layers_out.setdefault(name, {})[parts[-1]] = value.float().numpy()
    max_hw = None
    if prep.get("max_height") and prep.get("max_width"):
        max_hw = (int(prep["max_height"]), int(prep["max_width"]))
    files = [CHECKPOINT, CONFIG]
    return ImportedNet(
        model_type=model_type, arch=arch, layers=layers_out, node_names=part_names, edges=edges,
        class_names=class_names, anchor_part=confmaps.get("anchor_part"),
        input_scale=float(prep.get("scale") or 1.0), crop_size=int(crop) if crop else None, max_hw=max_hw,
        source={"format": "sleap-nn", "version": str(cfg.get("sleap_nn_version") or "unknown"),
                "model_type": model_type, "dir": clean_path(model_dir), "sha256": file_hashes(model_dir, files)},
        weights_file=ckpt_path, conventions="sleap", resize="antialias_uint8",
    )

