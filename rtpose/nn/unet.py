"""A modular UNet sized for batch-1 latency on CPUs and GPUs alike.

Differences from SLEAP's UNet are deliberate and measured (bench/arch_latency.py):
an optional strided stem conv replaces the full-resolution level, which on a 2-core CPU
costs as much as the rest of the network; channel counts that are multiples of 16 keep
ONNX Runtime's blocked (NCHWc) convolutions on their fast path. BatchNorm speeds up
training and is folded into the convolutions before export (``fold_batchnorm``).

The same module also expresses the UNets of SLEAP 1.x and sleap-nn, so that their
trained weights run in our pipeline (``rtpose/export/importers``): ``stem_stride=1``
(first block at full resolution), ``middle_convs`` (their "middle block": an expand and
a contract conv at the deepest level; 0 = none), ``channel_list`` (their channel counts
are ``int(filters * filters_rate**level)``, truncated), ``skip_first`` (they concatenate
the skip connection before the upsampled features) and ``upsampling``: bilinear, or a
3x3 stride-2 transposed conv followed by ReLU, aligned as PyTorch's
``ConvTranspose2d(padding=1, output_padding=1)`` (``"transposed"``, sleap-nn) or as
Keras' ``Conv2DTranspose(padding="same")`` (``"transposed_keras"``, SLEAP 1.x), which
keeps the first ``2n`` pixels of the full transposed output where PyTorch keeps the
last ``2n``.
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
    kernel_size: int = 3
    middle_convs: int | None = None  # convs at the deepest level; None: convs_per_block; 0: none
    channel_list: list[int] | None = None  # channels per level 0..down_blocks; None: from filters
    skip_first: bool = False  # decoder input = cat([skip, upsampled]) (SLEAP) or cat([upsampled, skip])
    upsampling: str = "bilinear"  # or "transposed" (PyTorch alignment), "transposed_keras"

    @property
    def n_decoder_convs(self) -> int:
        return self.convs_per_block if self.decoder_convs is None else self.decoder_convs

    @property
    def max_stride(self) -> int:
        return self.stem_stride * 2**self.down_blocks

    @property
    def output_stride(self) -> int:
        return self.max_stride // 2**self.up_blocks

    @property
    def n_middle_convs(self) -> int:
        return self.convs_per_block if self.middle_convs is None else self.middle_convs

    def channels(self, level: int) -> int:
        if self.channel_list is not None:
            return int(self.channel_list[level])
        return int(round(self.filters * self.filters_rate**level))

    @property
    def bottleneck_channels(self) -> int:
        return self.channels(self.down_blocks) if self.n_middle_convs else self.channels(self.down_blocks - 1)

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
        if self.upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, not {self.upsampling!r}")
        if self.channel_list is not None and len(self.channel_list) != self.down_blocks + 1:
            raise ValueError(f"channel_list needs {self.down_blocks + 1} entries (levels 0..down_blocks), "
                             f"not {len(self.channel_list)}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, not {self.kernel_size}")


UPSAMPLING = ("bilinear", "transposed", "transposed_keras")


def conv_block(c_in: int, c_out: int, n: int, batch_norm: bool, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel, stride=stride if i == 0 else 1,
                                padding=kernel // 2, bias=not batch_norm))
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
        bn, k = spec.batch_norm, spec.kernel_size
        c_in = spec.in_channels
        self.stem = None
        if spec.stem_stride > 1:
            self.stem = conv_block(c_in, spec.filters, 1, bn, stride=spec.stem_stride, kernel=k)
            c_in = spec.filters
        self.down = nn.ModuleList()
        for level in range(spec.down_blocks):
            self.down.append(conv_block(c_in, spec.channels(level), spec.convs_per_block, bn, kernel=k))
            c_in = spec.channels(level)
        self.bottleneck = conv_block(c_in, spec.bottleneck_channels, spec.n_middle_convs, bn, kernel=k)
        c_in = spec.bottleneck_channels
        self.up = nn.ModuleList()
        # Transposed-conv upsampling (SLEAP's up_interpolate=False): 3x3, stride 2, bias, ReLU.
        self.upsample = nn.ModuleList() if spec.upsampling != "bilinear" else None
        for j in range(spec.up_blocks):
            level = spec.down_blocks - 1 - j
            c_up = c_in
            if self.upsample is not None:
                c_up = spec.channels(level)
                self.upsample.append(nn.ConvTranspose2d(c_in, c_up, 3, stride=2, bias=True))
            self.up.append(conv_block(c_up + spec.channels(level), spec.channels(level), spec.n_decoder_convs, bn,
                                      kernel=k))
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
            if self.upsample is None:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            else:
                x = F.relu(self._transposed(self.upsample[j], x))
                if x.shape[-2:] != skip.shape[-2:]:
                    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x] if self.spec.skip_first else [x, skip], dim=1))
        return x, deepest

    def _transposed(self, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
        """2x upsampling by a 3x3 stride-2 transposed conv: the full output has ``2n + 1``
        pixels per axis; PyTorch's ``padding=1, output_padding=1`` keeps ``[1, 2n]``,
        Keras' ``padding="same"`` keeps ``[0, 2n - 1]`` (TensorFlow pads the equivalent
        forward conv by 0 before and 1 after)."""
        full = conv(x)
        h, w = 2 * x.shape[-2], 2 * x.shape[-1]
        if self.spec.upsampling == "transposed_keras":
            return full[..., :h, :w]
        return full[..., 1:h + 1, 1:w + 1]

    def receptive_field(self) -> int:
        """Receptive field (input pixels) of one output pixel, from the layer geometry."""
        rf, jump = 1, 1
        spec = self.spec
        r = spec.kernel_size // 2  # pixels a conv reads on each side
        if spec.stem_stride > 1:
            rf += 2 * r * jump
            jump *= spec.stem_stride
        for _ in range(spec.down_blocks):
            rf += 2 * r * jump * spec.convs_per_block
            rf += jump  # 2x2 pool
            jump *= 2
        rf += 2 * r * jump * spec.n_middle_convs  # bottleneck
        for _ in range(spec.up_blocks):
            rf += jump  # 2x upsampling (bilinear or 3x3 transposed) reads two coarse pixels
            jump //= 2
            rf += 2 * r * jump * spec.n_decoder_convs
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
