"""The whole top-down inference as one torch module: uint8 frames in, fixed-size
tensors out. Exported to ONNX by rtpose.export, run directly by the torch-cuda engine.

Steps (all static shapes): downscale -> centroid net -> local peaks (3x3 suppression,
threshold, top-k) -> sub-pixel refinement -> integer crop centres -> crops gathered at
full resolution -> centered-instance net -> per-node global peaks -> refinement ->
frame pixels; class softmax. Identity assignment (one instance per class) is left to
the host (Hungarian matching), where it is cheap and exact.

Two conventions (``conventions``), so that imported SLEAP / sleap-nn models give the
points their own predictor gives:

- ``"rtpose"``: pixel centres at integer coordinates at every scale (map pixel ``m``
  at stride ``s`` is input pixel ``m*s + (s-1)/2``); crops start at the rounded
  centroid minus half the crop.
- ``"sleap"`` (sleap-nn 0.3.5, ``inference/ops/coord.py``, ``ops/crops.py``): a map
  pixel ``m`` is input pixel ``m*s``, a scaled pixel ``p`` is frame pixel ``p/scale``;
  crops start at ``floor(c + 0.5) - crop/2`` for a centroid ``c``, and crop points are
  moved back by the unrounded ``c - crop/2 + 0.5``. Frames are padded to the centroid
  max stride after scaling.

``resize`` says how the centroid input is scaled: ``"box"`` (ours: exact box average
for 1/k), ``"bilinear"`` (SLEAP 1.x: ``tf.image.resize``, half-pixel centres) or
``"antialias_uint8"`` (sleap-nn: torchvision's antialiased bilinear resize of the uint8
frame, rounded back to integers).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtpose.nn.models import CentroidNet, InstanceNet, centroid_arch_from_dict, instance_arch_from_dict
from rtpose.nn.peaks import DistinctPeaks, global_peaks, local_peaks, refine


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


CONVENTIONS = ("rtpose", "sleap")
RESIZES = ("box", "bilinear", "antialias_uint8")


def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` antialiased bilinear (triangle filter) resampling weights, as
    PyTorch's ``interpolate(..., antialias=True, align_corners=False)`` computes them
    (aten ``UpSampleKernel``: support = in/out, taps normalised over the frame)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    inv = 1.0 / support
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi)
        t = np.clip(1.0 - np.abs((j - centre + 0.5) * inv), 0.0, None)
        w[i, lo:hi] = t / t.sum()
    return w


def resize_antialias(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Antialiased bilinear resize of a ``(B, C, H, W)`` float batch to
    ``int(H*scale) x int(W*scale)`` (torchvision's ``resize`` on tensors). For 1/k the
    filter is one strided separable convolution with border renormalisation; otherwise
    two resampling matrices."""
    _, c, h, w = (int(v) for v in x.shape)  # static frame sizes (the graph has fixed frames)
    oh, ow = int(h * scale), int(w * scale)
    wh, ww = _aa_weights(h, oh), _aa_weights(w, ow)
    inv = 1.0 / scale
    k = int(round(inv))
    if abs(inv - k) < 1e-9 and oh * k == h and ow * k == w and k > 1:
        # Interior rows all share one kernel; the frame edges only renormalise it.
        i = oh // 2
        taps = np.nonzero(wh[i])[0]
        first = int(taps[0] - k * i)
        kern = wh[i, taps] * (wh[i, taps].sum() ** -1)
        norm_h = np.array([kern[(np.arange(len(kern)) + k * r + first >= 0)
                                & (np.arange(len(kern)) + k * r + first < h)].sum() for r in range(oh)])
        norm_w = np.array([kern[(np.arange(len(kern)) + k * r + first >= 0)
                                & (np.arange(len(kern)) + k * r + first < w)].sum() for r in range(ow)])
        pad_lo, pad_hi = -first, len(kern) - k - (-first)
        kt = torch.tensor(kern, dtype=x.dtype, device=x.device)
        y = F.pad(x.reshape(-1, 1, h, w), (pad_lo, pad_hi, pad_lo, pad_hi))  # -1: the batch stays dynamic
        y = F.conv2d(y, kt.reshape(1, 1, -1, 1), stride=(k, 1))
        y = F.conv2d(y, kt.reshape(1, 1, 1, -1), stride=(1, k))
        norm = torch.tensor(np.outer(norm_h, norm_w), dtype=x.dtype, device=x.device)
        return (y / norm).reshape(-1, c, oh, ow)
    a_h = torch.tensor(wh, dtype=x.dtype, device=x.device)
    a_w = torch.tensor(ww, dtype=x.dtype, device=x.device)
    return torch.matmul(torch.matmul(a_h, x), a_w.t())


def scale_frames(x: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
    """Frames (float 0-255) scaled for the centroid network by ``mode`` (see module)."""
    if scale == 1.0:
        return x
    if mode == "box":
        return downscale(x, scale)
    if mode == "bilinear":
        size = (int(int(x.shape[-2]) * scale), int(int(x.shape[-1]) * scale))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if mode == "antialias_uint8":
        return torch.round(resize_antialias(x, scale)).clamp(0, 255)
    raise ValueError(f"unknown resize {mode!r}; choose one of {RESIZES}")


def _map_to_input(m: torch.Tensor, stride: int, conventions: str = "rtpose") -> torch.Tensor:
    if conventions == "sleap":
        return m * stride
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
        conventions: str = "rtpose",
        resize: str = "box",
        distinct_nodes: dict | None = None,
    ):
        super().__init__()
        if conventions not in CONVENTIONS:
            raise ValueError(f"unknown conventions {conventions!r}; choose one of {CONVENTIONS}")
        if resize not in RESIZES:
            raise ValueError(f"unknown resize {resize!r}; choose one of {RESIZES}")
        self.conventions = conventions
        self.resize = resize
        self.centroid = centroid
        self.instance = instance
        self.input_scale = float(input_scale)
        self.crop_size = int(crop_size)
        self.max_instances = int(max_instances)
        self.centroid_threshold = float(centroid_threshold)
        self.refinement = refinement
        # Nodes that never share a place in one instance (model.json's ``distinct_nodes``:
        # node indices, crop pixels), or None: each node is its map's global peak.
        self.distinct_nodes = distinct_nodes
        self.distinct = None
        if distinct_nodes:
            stride = instance.backbone.spec.output_stride
            self.distinct = DistinctPeaks(list(distinct_nodes["nodes"]), instance.confmaps.out_channels,
                                          distinct_nodes["min_distance_px"] / stride,
                                          distinct_nodes["exclusion_px"] / stride)
        # The networks' dtype (fp16 on the GPU); frames, peaks and coordinates stay fp32.
        self.compute_dtype = torch.float32
        self.centroid_stride = centroid.backbone.spec.output_stride
        self.instance_stride = instance.backbone.spec.output_stride
        # Frames are padded (bottom/right) to a multiple of this before downscaling
        # (rtpose), or the scaled frame to the centroid max stride (sleap).
        self.frame_multiple = int(round(centroid.backbone.spec.max_stride / self.input_scale))
        self.centroid_channels = centroid.backbone.spec.in_channels
        self.instance_channels = instance.backbone.spec.in_channels
        if crop_size % instance.backbone.spec.max_stride or crop_size % 2:
            raise ValueError(
                f"crop_size {crop_size} must be even and a multiple of the instance max stride "
                f"{instance.backbone.spec.max_stride}"
            )

    def centroids(self, x: torch.Tensor):
        """Centroid values ``(B, N)`` and full-frame (x, y) ``(B, N, 2)`` of frames ``x``
        given as float 0-255."""
        small = scale_frames(x, self.input_scale, self.resize)
        if self.conventions == "sleap":
            m = self.centroid.backbone.spec.max_stride
            h, w = small.shape[-2:]
            pad_h, pad_w = math.ceil(h / m) * m - h, math.ceil(w / m) * m - w
            if pad_h or pad_w:
                small = F.pad(small, (0, pad_w, 0, pad_h))
        small = small * (1.0 / 255.0)
        if self.centroid_channels == 3:
            small = small.repeat(1, 3, 1, 1)
        cm = self.centroid(small.to(self.compute_dtype)).float()
        vals, rows, cols = local_peaks(cm, self.max_instances, self.centroid_threshold)
        ry, rx = refine(cm, rows.unsqueeze(1), cols.unsqueeze(1), self.refinement)
        xy_scaled = _map_to_input(torch.stack([rx[:, 0], ry[:, 0]], dim=-1), self.centroid_stride, self.conventions)
        if self.conventions == "sleap":
            return vals, xy_scaled / self.input_scale
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
        crops = crops.to(self.compute_dtype) * (1.0 / 255.0)
        if self.instance_channels == 3:
            crops = crops.repeat(1, 3, 1, 1)
        return crops

    def forward(self, frames: torch.Tensor):
        b, _, h, w = frames.shape
        m = self.frame_multiple
        pad_h, pad_w = (math.ceil(h / m) * m - h), (math.ceil(w / m) * m - w)
        x = frames.float()
        if (pad_h or pad_w) and self.conventions != "sleap":
            x = F.pad(x, (0, pad_w, 0, pad_h))
        centroid_vals, centroid_xy = self.centroids(x)
        if self.conventions == "sleap":
            centres = torch.floor(centroid_xy + 0.5).long()
        else:
            centres = torch.round(centroid_xy).long()
        crops = self.crops(frames, centres)
        cms, logits = self.instance(crops)
        cms = cms.float()  # peak maths in fp32 whatever the networks ran in
        vals, rows, cols = global_peaks(cms)
        if self.distinct is not None:
            vals, rows, cols = self.distinct(cms, vals, rows, cols)
        ry, rx = refine(cms, rows.unsqueeze(-1), cols.unsqueeze(-1), self.refinement)
        in_crop = _map_to_input(torch.stack([rx[..., 0], ry[..., 0]], dim=-1), self.instance_stride,
                                self.conventions)
        n, nodes = self.max_instances, cms.shape[1]
        if self.conventions == "sleap":
            origin = (centroid_xy - self.crop_size / 2 + 0.5).reshape(b * n, 1, 2)
        else:
            origin = (centres - self.crop_size // 2).to(in_crop.dtype).reshape(b * n, 1, 2)
        points = (in_crop + origin).reshape(b, n, nodes, 2)
        point_scores = vals.reshape(b, n, nodes)
        if logits is None:
            class_probs = torch.zeros(b, n, 0, dtype=points.dtype, device=points.device)
        else:
            class_probs = torch.softmax(logits.float(), dim=-1).reshape(b, n, -1)
        valid = centroid_vals > self.centroid_threshold
        return points.float(), point_scores.float(), centroid_vals.float(), class_probs, valid


def pipeline_from_architecture(architecture: dict, **options) -> TopDownPipeline:
    """An untrained pipeline shaped as rtpose.json's ``architecture`` says (the centroid
    and instance networks, and under ``"pipeline"`` the conventions and resize of an
    imported model); ``options`` are TopDownPipeline's keyword arguments."""
    extra = architecture.get("pipeline", {})
    return TopDownPipeline(
        centroid_arch_from_dict(architecture["centroid"]).build(),
        instance_arch_from_dict(architecture["instance"]).build(),
        conventions=extra.get("conventions", "rtpose"), resize=extra.get("resize", "box"),
        distinct_nodes=extra.get("distinct_nodes"), **options,
    )
