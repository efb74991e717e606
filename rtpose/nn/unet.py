"""A modular UNet sized for batch-1 latency on CPUs and GPUs alike.

Differences from SLEAP's UNet are deliberate and measured (bench/arch_latency.py):
an optional strided stem conv replaces the full-resolution level, which on a 2-core CPU
costs as much as the rest of the network; channel counts that are multiples of 16 keep
ONNX Runtime's blocked (NCHWc) convolutions on their fast path. BatchNorm speeds up
training and is folded into the convolutions before export (``fold_batchnorm``).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn


@attrs.define
class UNetSpec:
    """Shape of a UNet; saved in checkpoints and in rtpose.json (``architecture``)."""

    in_channels: int = 1
    filters: int = 16
    filters_rate: float = 2.0
    down_blocks: int = 3  # max stride = stem_stride * 2**down_blocks
    up_blocks: int = 3  # output stride = max stride / 2**up_blocks
    convs_per_block: int = 2
    decoder_convs: int | None = None  # convs per up block; None: convs_per_block
    stem_stride: int = 2  # 1: first block at full resolution (SLEAP's layout)
    batch_norm: bool = True

    @property
    def n_decoder_convs(self) -> int:
        return self.convs_per_block if self.decoder_convs is None else self.decoder_convs

    @property
    def max_stride(self) -> int:
        return self.stem_stride * 2**self.down_blocks

    @property
    def output_stride(self) -> int:
        return self.max_stride // 2**self.up_blocks

    def channels(self, level: int) -> int:
        return int(round(self.filters * self.filters_rate**level))

    @property
    def bottleneck_channels(self) -> int:
        return self.channels(self.down_blocks)

    @property
    def output_channels(self) -> int:
        return self.channels(self.down_blocks - self.up_blocks) if self.up_blocks else self.bottleneck_channels

    def validate(self) -> None:
        if self.up_blocks > self.down_blocks:
            raise ValueError(f"up_blocks ({self.up_blocks}) cannot exceed down_blocks ({self.down_blocks})")
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, not {self.stem_stride}")
        if self.filters < 1 or self.convs_per_block < 1 or self.down_blocks < 1:
            raise ValueError("filters, convs_per_block and down_blocks must be >= 1")


def conv_block(c_in: int, c_out: int, n: int, batch_norm: bool, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride if i == 0 else 1,
                                padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder (conv blocks + 2x max pooling), bottleneck, decoder (bilinear 2x
    upsampling, skip concatenation, refinement convs).

    ``forward`` returns the decoder output at ``output_stride`` and the bottleneck
    features, which the identity head pools.
    """

    def __init__(self, spec: UNetSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        bn = spec.batch_norm
        c_in = spec.in_channels
        self.stem = None
        if spec.stem_stride > 1:
            self.stem = conv_block(c_in, spec.filters, 1, bn, stride=spec.stem_stride)
            c_in = spec.filters
        self.down = nn.ModuleList()
        for level in range(spec.down_blocks):
            self.down.append(conv_block(c_in, spec.channels(level), spec.convs_per_block, bn))
            c_in = spec.channels(level)
        self.bottleneck = conv_block(c_in, spec.bottleneck_channels, spec.convs_per_block, bn)
        c_in = spec.bottleneck_channels
        self.up = nn.ModuleList()
        for j in range(spec.up_blocks):
            level = spec.down_blocks - 1 - j
            self.up.append(conv_block(c_in + spec.channels(level), spec.channels(level), spec.n_decoder_convs, bn))
            c_in = spec.channels(level)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        deepest = x
        for j, block in enumerate(self.up):
            skip = skips[-1 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x, deepest

    def receptive_field(self) -> int:
        """Receptive field (input pixels) of one output pixel, from the layer geometry."""
        rf, jump = 1, 1
        spec = self.spec
        if spec.stem_stride > 1:
            rf += 2 * jump
            jump *= spec.stem_stride
        for _ in range(spec.down_blocks):
            rf += 2 * jump * spec.convs_per_block
            rf += jump  # 2x2 pool
            jump *= 2
        rf += 2 * jump * spec.convs_per_block  # bottleneck
        for _ in range(spec.up_blocks):
            rf += jump  # bilinear 2x upsampling reads two coarse pixels
            jump //= 2
            rf += 2 * jump * spec.n_decoder_convs
        return rf


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair into the conv, in place (eval-mode maths).

    After folding, the BatchNorm becomes an identity, so exported graphs carry plain
    convolutions whose weights keep stable names (the torch-cuda engine reloads them by
    name from model.onnx).
    """
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                seq[i + 1] = nn.Identity()
    return module
