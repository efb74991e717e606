"""The two networks of the top-down ID approach.

``CentroidNet`` sees the whole frame at ``input_scale`` and outputs one multi-peak
confidence map of the anchor node. ``InstanceNet`` sees a full-resolution crop centred
on one anchor and outputs one single-peak map per node, plus identity logits from the
deepest encoder features (global max pooling, then fully connected layers), as in the
SLEAP paper's top-down ID models.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from rtpose.nn.unet import UNet, UNetSpec


class CentroidNet(nn.Module):
    def __init__(self, unet: UNetSpec):
        super().__init__()
        self.backbone = UNet(unet)
        self.confmaps = nn.Conv2d(unet.output_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _ = self.backbone(x)
        return self.confmaps(features)


class ClassHead(nn.Module):
    """Global max pool over the bottleneck, ``n_layers`` FC layers, logits over classes."""

    def __init__(self, in_channels: int, n_classes: int, units: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(n_layers - 1):
            layers += [nn.Linear(c, units), nn.ReLU(inplace=True)]
            c = units
        layers.append(nn.Linear(c, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, deepest: torch.Tensor) -> torch.Tensor:
        pooled = torch.amax(deepest, dim=(2, 3))
        return self.mlp(pooled)


class InstanceNet(nn.Module):
    def __init__(self, unet: UNetSpec, n_nodes: int, n_classes: int, class_units: int = 64,
                 class_layers: int = 3):
        super().__init__()
        self.backbone = UNet(unet)
        self.confmaps = nn.Conv2d(unet.output_channels, n_nodes, 1)
        self.classes = ClassHead(unet.bottleneck_channels, n_classes, class_units, class_layers) if n_classes else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, deepest = self.backbone(x)
        logits = self.classes(deepest) if self.classes is not None else None
        return self.confmaps(features), logits


@attrs.define
class CentroidArch:
    unet: UNetSpec
    input_scale: float
    sigma: float  # in input (scaled) pixels

    def build(self) -> CentroidNet:
        return CentroidNet(self.unet)


@attrs.define
class InstanceArch:
    unet: UNetSpec
    crop_size: int
    sigma: float  # in crop (full-resolution) pixels
    n_nodes: int
    n_classes: int
    class_units: int = 64
    class_layers: int = 3

    def build(self) -> InstanceNet:
        return InstanceNet(self.unet, self.n_nodes, self.n_classes, self.class_units, self.class_layers)


def arch_to_dict(arch: CentroidArch | InstanceArch) -> dict[str, Any]:
    return attrs.asdict(arch)


def centroid_arch_from_dict(d: dict[str, Any]) -> CentroidArch:
    d = dict(d)
    return CentroidArch(unet=UNetSpec(**d.pop("unet")), **d)


def instance_arch_from_dict(d: dict[str, Any]) -> InstanceArch:
    d = dict(d)
    return InstanceArch(unet=UNetSpec(**d.pop("unet")), **d)
