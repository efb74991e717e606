"""The whole top-down inference as one torch module: uint8 frames in, fixed-size
tensors out. Exported to ONNX by rtpose.export, run directly by the torch-cuda engine.

Steps (all static shapes): downscale -> centroid net -> local peaks (3x3 suppression,
threshold, top-k) -> sub-pixel refinement -> integer crop centres -> crops gathered at
full resolution -> centered-instance net -> per-node global peaks -> refinement ->
frame pixels; class softmax. Identity assignment (one instance per class) is left to
the host (Hungarian matching), where it is cheap and exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rtpose.nn.models import CentroidNet, InstanceNet
from rtpose.nn.peaks import global_peaks, local_peaks, refine


def downscale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize a float batch by ``scale``: box averaging for 1/k (exact, alias-free),
    bilinear otherwise. Training uses this same function for its centroid inputs.
    Linear, so it commutes with the /255 normalisation (done after, on fewer pixels)."""
    if scale == 1.0:
        return x
    inv = 1.0 / scale
    if abs(inv - round(inv)) < 1e-6:
        k = int(round(inv))
        return F.avg_pool2d(x, k)
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def _map_to_input(m: torch.Tensor, stride: int) -> torch.Tensor:
    return m * stride + (stride - 1) / 2.0


class TopDownPipeline(nn.Module):
    def __init__(
        self,
        centroid: CentroidNet,
        instance: InstanceNet,
        *,
        input_scale: float,
        crop_size: int,
        max_instances: int,
        centroid_threshold: float = 0.2,
        refinement: str = "integral",
    ):
        super().__init__()
        self.centroid = centroid
        self.instance = instance
        self.input_scale = float(input_scale)
        self.crop_size = int(crop_size)
        self.max_instances = int(max_instances)
        self.centroid_threshold = float(centroid_threshold)
        self.refinement = refinement
        # The networks' dtype (fp16 on the GPU); frames, peaks and coordinates stay fp32.
        self.compute_dtype = torch.float32
        self.centroid_stride = centroid.backbone.spec.output_stride
        self.instance_stride = instance.backbone.spec.output_stride
        # Frames are padded (bottom/right) to a multiple of this before downscaling.
        self.frame_multiple = int(round(centroid.backbone.spec.max_stride / self.input_scale))
        if crop_size % instance.backbone.spec.max_stride or crop_size % 2:
            raise ValueError(
                f"crop_size {crop_size} must be even and a multiple of the instance max stride "
                f"{instance.backbone.spec.max_stride}"
            )

    def centroids(self, x: torch.Tensor):
        """Centroid values ``(B, N)`` and full-frame (x, y) ``(B, N, 2)`` of frames ``x``
        given as float 0-255."""
        small = downscale(x, self.input_scale) * (1.0 / 255.0)
        cm = self.centroid(small.to(self.compute_dtype)).float()
        vals, rows, cols = local_peaks(cm, self.max_instances, self.centroid_threshold)
        ry, rx = refine(cm, rows.unsqueeze(1), cols.unsqueeze(1), self.refinement)
        xy_scaled = _map_to_input(torch.stack([rx[:, 0], ry[:, 0]], dim=-1), self.centroid_stride)
        xy = (xy_scaled + 0.5) / self.input_scale - 0.5
        return vals, xy

    def crops(self, frames: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """``(B*N, 1, crop, crop)`` float crops of ``(B, 1, H, W)`` uint8 frames, centred
        on the integer pixels ``centres (B, N, 2)`` (x, y), zero outside the frame."""
        b, _, h, w = frames.shape
        n = centres.shape[1]
        half = self.crop_size // 2
        padded = F.pad(frames, (half, half, half, half))
        wp = w + 2 * half
        cx = centres[..., 0].clamp(0, w - 1)
        cy = centres[..., 1].clamp(0, h - 1)
        offs = torch.arange(self.crop_size, device=frames.device)
        rows = cy.reshape(b, n, 1, 1) + offs.reshape(1, 1, -1, 1)  # padded row = cy - half + i + half
        cols = cx.reshape(b, n, 1, 1) + offs.reshape(1, 1, 1, -1)
        idx = (rows * wp + cols).reshape(b, n * self.crop_size * self.crop_size)
        flat = padded.reshape(b, -1)
        crops = torch.gather(flat, 1, idx).reshape(b * n, 1, self.crop_size, self.crop_size)
        return crops.to(self.compute_dtype) * (1.0 / 255.0)

    def forward(self, frames: torch.Tensor):
        b, _, h, w = frames.shape
        m = self.frame_multiple
        pad_h, pad_w = (math.ceil(h / m) * m - h), (math.ceil(w / m) * m - w)
        x = frames.float()
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        centroid_vals, centroid_xy = self.centroids(x)
        centres = torch.round(centroid_xy).long()
        crops = self.crops(frames, centres)
        cms, logits = self.instance(crops)
        cms = cms.float()  # peak maths in fp32 whatever the networks ran in
        vals, rows, cols = global_peaks(cms)
        ry, rx = refine(cms, rows.unsqueeze(-1), cols.unsqueeze(-1), self.refinement)
        in_crop = _map_to_input(torch.stack([rx[..., 0], ry[..., 0]], dim=-1), self.instance_stride)
        n, nodes = self.max_instances, cms.shape[1]
        origin = (centres - self.crop_size // 2).to(in_crop.dtype).reshape(b * n, 1, 2)
        points = (in_crop + origin).reshape(b, n, nodes, 2)
        point_scores = vals.reshape(b, n, nodes)
        if logits is None:
            class_probs = torch.zeros(b, n, 0, dtype=points.dtype, device=points.device)
        else:
            class_probs = torch.softmax(logits.float(), dim=-1).reshape(b, n, -1)
        valid = centroid_vals > self.centroid_threshold
        return points.float(), point_scores.float(), centroid_vals.float(), class_probs, valid
