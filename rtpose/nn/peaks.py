"""Peak finding on confidence maps with static shapes, so that it exports to ONNX and
runs inside the graph (no data-dependent control flow).

Sub-pixel refinement: ``integral`` is SLEAP's integral regression (the confidence-
weighted mean offset over a patch around the peak, negative confidences clipped to 0);
``integral_raw`` is the same with the raw confidences as weights, exactly as SLEAP and
sleap-nn compute it (``sleap_nn.inference.ops.peaks.integral_regression``: 5x5 patch,
zeros outside the map), used for imported models; ``quadratic`` fits a parabola to
the log-confidence of the peak and its 4 neighbours, which is exact for a Gaussian peak
wherever it falls between pixels. Which one a model uses is recorded in rtpose.json.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REFINEMENTS = ("integral", "integral_raw", "quadratic", "none")


def local_peaks(cm: torch.Tensor, k: int, threshold: float):
    """Top-``k`` local maxima (3x3) of a ``(B, 1, h, w)`` map.

    Returns values ``(B, k)`` and integer rows/cols ``(B, k)``; values under
    ``threshold`` mark slots without a peak.
    """
    b, _, h, w = cm.shape
    pooled = F.max_pool2d(cm, 3, stride=1, padding=1)
    peak_vals = torch.where((cm == pooled) & (cm > threshold), cm, torch.full_like(cm, -1.0))
    vals, idx = peak_vals.reshape(b, h * w).topk(k, dim=1)
    return vals, idx // w, idx % w


def global_peaks(cm: torch.Tensor):
    """Maximum of every channel of a ``(M, C, h, w)`` map: values, rows, cols ``(M, C)``."""
    m, c, h, w = cm.shape
    vals, idx = cm.reshape(m, c, h * w).max(dim=2)
    return vals, idx // w, idx % w


def refine(cm: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, method: str = "integral",
           radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel (row, col) of peaks at integer ``rows, cols`` of shape ``(M, C, K)``
    on maps ``(M, C, h, w)``; returns float tensors of the same shape."""
    if method == "none":
        return rows.to(cm.dtype), cols.to(cm.dtype)
    m, c, h, w = cm.shape
    k = rows.shape[-1]
    if method in ("integral", "integral_raw"):
        r = torch.arange(-radius, radius + 1, device=cm.device)
        dy = r.repeat_interleave(2 * radius + 1)
        dx = r.repeat(2 * radius + 1)
    elif method == "quadratic":
        dy = torch.tensor([0, -1, 1, 0, 0], device=cm.device)
        dx = torch.tensor([0, 0, 0, -1, 1], device=cm.device)
    else:
        raise ValueError(f"unknown refinement {method!r}; choose one of {REFINEMENTS}")
    yy = rows.unsqueeze(-1) + dy  # (M, C, K, P)
    xx = cols.unsqueeze(-1) + dx
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    flat_idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(m, c, -1)
    vals = torch.gather(cm.reshape(m, c, h * w), 2, flat_idx).reshape(m, c, k, -1)
    if method in ("integral", "integral_raw"):
        if method == "integral":
            wts = torch.where(inside, vals.clamp(min=0), torch.zeros_like(vals))
            total = wts.sum(-1).clamp(min=1e-6)
        else:
            wts = torch.where(inside, vals, torch.zeros_like(vals))
            total = wts.sum(-1)
            total = torch.where(total.abs() < 1e-12, torch.full_like(total, 1e-12), total)
        off_y = (wts * dy.to(cm.dtype)).sum(-1) / total
        off_x = (wts * dx.to(cm.dtype)).sum(-1) / total
    else:
        # Neighbours outside the map are treated as equal to the centre (no shift).
        centre = vals[..., 0:1]
        vals = torch.where(inside, vals, centre)
        logv = torch.log(vals.clamp(min=1e-6))
        c0, up, down, left, right = logv.unbind(-1)
        off_y = _parabola_offset(up, c0, down)
        off_x = _parabola_offset(left, c0, right)
    return rows.to(cm.dtype) + off_y, cols.to(cm.dtype) + off_x


def _parabola_offset(before: torch.Tensor, centre: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    curvature = before - 2 * centre + after
    off = 0.5 * (before - after) / torch.where(curvature < -1e-6, curvature, torch.full_like(curvature, -1e-6))
    return off.clamp(-0.5, 0.5)
