"""What the SLEAP-family readers share: the parsed model, the mapping of SLEAP layer
names onto rtpose's modules, and the one-line errors.

SLEAP 1.x (Keras) and sleap-nn (PyTorch) name their layers alike
(``stack0_enc{i}_conv{c}``, ``stack0_enc{n}_middle_expand_conv{c}``,
``stack0_dec{j}_s{a}_to_s{b}_refine_conv{c}``, ``..._trans_conv``,
``CentroidConfmapsHead``, ``CenteredInstanceConfmapsHead``, ``pre_classification{i}_fc``,
``ClassVectorsHead``), so each reader only turns its file into
``{layer name: {"weight": array in PyTorch layout, "bias": array}}`` and
``load_layers`` does the rest, checking every shape against the network the config
describes.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rtpose.errors import RtposeError

if TYPE_CHECKING:
    from rtpose.nn.unet import UNetSpec

TOPDOWN_TYPES = ("centroid", "centered_instance", "multi_class_topdown")
# Model types SLEAP and sleap-nn train that rtpose does not run (yet).
OTHER_TYPES = {
    "single_instance": "single instance", "bottomup": "bottom-up", "multi_instance": "bottom-up",
    "multi_class_bottomup": "bottom-up ID (multi_class_bottomup)",
}


@attrs.define
class ImportedNet:
    """One network of a foreign model directory, as rtpose modules and metadata."""

    model_type: str  # one of TOPDOWN_TYPES
    arch: Any  # CentroidArch | InstanceArch
    layers: dict[str, dict[str, np.ndarray]]  # SLEAP layer name -> weight/bias (PyTorch layout)
    node_names: list[str]
    edges: list[tuple[int, int]]
    class_names: list[str]
    anchor_part: str | None
    input_scale: float
    crop_size: int | None
    max_hw: tuple[int, int] | None  # the frame size it was trained on, where recorded
    source: dict[str, Any]  # format, version, files and their SHA-256
    weights_file: Path
    conventions: str = "sleap"
    resize: str = "antialias_uint8"
    ignored_layers: list[str] = attrs.field(factory=list)


def topdown_unet(model_dir: Path, cfg_path: Path, heads: dict[str, Any] | None, backbones: dict[str, Any] | None,
                 heads_key: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``(heads, model type, UNet config)`` of a SLEAP-format model config, checked.

    Args:
        heads, backbones: the config's head and backbone mappings (unset ones are ignored).
        heads_key: where the heads stand in the file, for the message.

    Raises:
        RtposeError: no head; a model type other than top-down (bottom-up and single
            instance named by type); a backbone other than a UNet.
    """
    heads = {k: v for k, v in (heads or {}).items() if v}
    if not heads:
        raise RtposeError(f"{cfg_path}: {heads_key} names no head")
    model_type = next(iter(heads))
    if model_type not in TOPDOWN_TYPES:
        if model_type in OTHER_TYPES:
            raise unsupported(model_dir, model_type)
        raise RtposeError(f"{model_dir}: {model_type} models are not supported by rtpose export (top-down only)")
    backbones = {k: v for k, v in (backbones or {}).items() if v}
    if set(backbones) != {"unet"}:
        raise RtposeError(f"{cfg_path}: backbone {', '.join(backbones) or 'none'} is not supported (UNet only)")
    return heads, model_type, backbones["unet"]


def sleap_unet(u: dict[str, Any], in_channels: int, kernel_size: int, convs_per_block: int,
               transposed: str) -> tuple["UNetSpec", int]:
    """``(UNetSpec, output stride)`` of a SLEAP-format UNet backbone config ``u``.

    SLEAP 1.x and sleap-nn describe the same UNet (``filters``, ``filters_rate``,
    ``max_stride``, ``output_stride``, ``middle_block``, ``up_interpolate``); they differ in
    what the caller passes: the input channels and kernel size (read from the weights or
    the config), the convolutions per block, and the transposed-convolution layout
    (``transposed_keras`` or ``transposed``).
    """
    from rtpose.nn.unet import UNetSpec

    max_stride, output_stride = int(u["max_stride"]), int(u["output_stride"])
    down = int(round(math.log2(max_stride)))
    spec = UNetSpec(
        in_channels=in_channels, filters=int(u["filters"]), filters_rate=float(u["filters_rate"]),
        down_blocks=down, up_blocks=int(round(math.log2(max_stride / output_stride))),
        convs_per_block=convs_per_block, stem_stride=1, batch_norm=False, kernel_size=kernel_size,
        middle_convs=convs_per_block if u.get("middle_block", True) else 0,
        channel_list=unet_channels(int(u["filters"]), float(u["filters_rate"]), down), skip_first=True,
        upsampling="bilinear" if u.get("up_interpolate", True) else transposed,
    )
    return spec, output_stride


def confmaps_head(heads: dict[str, Any], model_type: str, output_stride: int, cfg_path: Path) -> dict[str, Any]:
    """The confidence-map head config of ``model_type`` (inside ``heads``).

    Raises:
        RtposeError: its output stride differs from the backbone's.
    """
    head = heads[model_type]
    # multi_class_topdown heads (both formats) and every sleap-nn head nest it under "confmaps"
    confmaps = head["confmaps"] if model_type == "multi_class_topdown" or "confmaps" in head else head
    if int(confmaps.get("output_stride") or output_stride) != output_stride:
        raise RtposeError(f"{cfg_path}: head output_stride {confmaps['output_stride']} differs from the backbone's "
                          f"{output_stride} (not supported)")
    return confmaps


def class_head(cfg_path: Path, model_type: str, head: dict[str, Any]) -> tuple[list[str], int, int, int]:
    """The identity head a SLEAP-format config records: ``(class names, classes, units, layers)``.

    SLEAP 1.x and sleap-nn both record ``class_vectors`` (``classes``, ``num_fc_units``,
    ``num_fc_layers``, ``global_pool``) for a multi-class top-down model; their
    ``num_fc_layers`` counts the hidden layers, ours the output layer too. Other model
    types have no head: ``([], 0, 64, 1)``.

    Raises:
        RtposeError: ``global_pool: false``, which rtpose's head does not express.
    """
    if model_type != "multi_class_topdown":
        return [], 0, 64, 1
    cv = head["class_vectors"]
    if not cv.get("global_pool", True):
        raise RtposeError(f"{cfg_path}: class_vectors.global_pool = false is not supported")
    names = [str(c) for c in cv["classes"]]
    return names, len(names), int(cv["num_fc_units"]), int(cv["num_fc_layers"]) + 1


def unsupported(model_dir: Path, model_type: str) -> RtposeError:
    name = OTHER_TYPES.get(model_type, model_type)
    return RtposeError(f"{model_dir}: {name} models are not supported by rtpose export "
                       "(top-down only: a centroid model with a centered_instance or multi_class_topdown model)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(model_dir: Path, names: list[str]) -> dict[str, str]:
    return {n: sha256(model_dir / n) for n in names if (model_dir / n).exists()}


def unet_channels(filters: int, rate: float, levels: int) -> list[int]:
    """SLEAP's channel count per level: ``int(filters * rate**level)`` (truncated)."""
    return [int(filters * rate**level) for level in range(levels + 1)]


_ENC = re.compile(r"stack0_enc(\d+)_conv(\d+)$")
_MID = re.compile(r"stack0_enc\d+_middle_(expand|contract)_conv(\d+)$")
_DEC = re.compile(r"stack0_dec(\d+)_s\d+_to_s\d+_refine_conv(\d+)$")
_TRANS = re.compile(r"stack0_dec(\d+)_s\d+_to_s\d+_trans_conv$")
_FC = re.compile(r"pre_classification(\d+)_fc$")


def module_name(layer: str, unet, n_fc: int) -> str | None:
    """rtpose parameter prefix of a SLEAP layer name, or None for layers rtpose does not
    run (e.g. SLEAP 1.x's OffsetRefinementHead)."""
    layer = re.sub(r"_\d+$", "", layer) if "Head" in layer else layer
    if m := _ENC.fullmatch(layer):
        return f"backbone.down.{int(m[1])}.{2 * int(m[2])}"
    if m := _MID.fullmatch(layer):
        index = int(m[2]) if m[1] == "expand" else unet.n_middle_convs - 1
        return f"backbone.bottleneck.{2 * index}"
    if m := _DEC.fullmatch(layer):
        return f"backbone.up.{int(m[1])}.{2 * int(m[2])}"
    if m := _TRANS.fullmatch(layer):
        return f"backbone.upsample.{int(m[1])}"
    if layer in ("CentroidConfmapsHead", "CenteredInstanceConfmapsHead"):
        return "confmaps"
    if m := _FC.fullmatch(layer):
        return f"classes.mlp.{2 * int(m[1])}"
    if layer == "ClassVectorsHead":
        return f"classes.mlp.{2 * n_fc}"
    return None


def load_layers(net, imported: ImportedNet) -> None:
    """Copy ``imported.layers`` into ``net`` (built from ``imported.arch``), or raise an
    RtposeError naming the first layer whose weights do not fit the config."""
    import torch

    unet = imported.arch.unet
    n_fc = getattr(imported.arch, "class_layers", 1) - 1
    state = net.state_dict()
    where = imported.weights_file
    given: dict[str, tuple[str, str, np.ndarray]] = {}
    for layer, params in imported.layers.items():
        prefix = module_name(layer, unet, n_fc)
        if prefix is None:
            imported.ignored_layers.append(layer)
            continue
        for kind, value in params.items():
            key = f"{prefix}.{kind}"
            if key not in state:
                raise RtposeError(f"{where}: layer {layer} has no place in the network its config describes "
                                  f"(max_stride, output_stride, filters or head mismatch)")
            given[key] = (layer, kind, value)
    for key, expected in state.items():  # in network order: the first misfit is the one to name
        if key not in given:
            raise RtposeError(f"{where}: no weights for {key} of the network the config describes "
                              f"(the weights are of another architecture)")
        layer, kind, value = given[key]
        if tuple(expected.shape) != tuple(value.shape):
            raise RtposeError(f"{where}: layer {layer} {kind} has shape {tuple(value.shape)} but the config "
                              f"implies {tuple(expected.shape)} (filters, filters_rate or units mismatch)")
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    net.load_state_dict(state)
