"""Peak finding on confidence maps with static shapes, so that it exports to ONNX and
runs inside the graph (no data-dependent control flow).

Sub-pixel refinement: ``integral`` is SLEAP's integral regression (the confidence-
weighted mean offset over a patch around the peak, negative confidences clipped to 0);
``integral_raw`` is the same with the raw confidences as weights, exactly as SLEAP and
sleap-nn compute it (``sleap_nn.inference.ops.peaks.integral_regression``: 5x5 patch,
zeros outside the map), used for imported models; ``quadratic`` fits a parabola to
the log-confidence of the peak and its 4 neighbours, which is exact for a Gaussian peak
wherever it falls between pixels. Which one a model uses is recorded in rtpose.json.

``DistinctPeaks`` gives nodes of one animal that never share a place (a fly's leg tips)
a place each: the weaker of two on one point takes its own map's next local peak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


class DistinctPeaks(nn.Module):
    """One place per node of ``group`` in each instance: where two of its nodes peak within
    ``min_distance`` map pixels of each other, the weaker moves to its own best other
    local peak (3x3 maximum) outside the square of half-side ``exclusion`` map pixels
    around its first.

    A centered-instance network sometimes puts two leg tips of one animal on the same
    leg (each map's strongest peak); the second node's own map usually holds a peak at
    the leg it stands for. Static shapes (ONNX): every node of the group gets its second
    peak (a 3x3 max-pool and a few element-wise steps on the group's maps; the exclusion
    square from row and column bands), and the results return to their channels through
    a constant 0/1 matrix, so ``torch.where`` picks without gather or scatter over the
    maps. The constants are buffers made once, so the forward pass copies nothing from
    the host (CUDA graph capture allows no such copy). A node with no other positive
    local peak stays. Ties: the later node of the group moves.

    Args:
        group: channel indices of nodes that never share a place (the leg tips).
        n_channels: channels of the confidence maps.
        min_distance: map pixels under which two peaks of the group are one place (between
            the integer peak pixels: refinement comes after).
        exclusion: map pixels (along x or y) around the first peak where no second is sought.
    """

    def __init__(self, group: list[int], n_channels: int, min_distance: float, exclusion: float):
        super().__init__()
        n = len(group)
        if n < 2 or len(set(group)) != n or min(group) < 0 or max(group) >= n_channels:
            raise ValueError(f"distinct nodes {group}: give two or more different channels of {n_channels}")
        self.min_distance2 = float(min_distance) ** 2
        self.exclusion = int(exclusion)
        to_channels = torch.zeros(n, n_channels)  # (G, C): group slot -> channel
        to_channels[torch.arange(n), torch.tensor(group)] = 1.0
        order = torch.arange(n)
        self.register_buffer("group", torch.tensor(group), persistent=False)
        self.register_buffer("to_channels", to_channels, persistent=False)
        self.register_buffer("others", order[:, None] != order[None, :], persistent=False)
        self.register_buffer("earlier", order[None, :] < order[:, None], persistent=False)

    def forward(self, cm: torch.Tensor, vals: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """``cm`` ``(M, C, h, w)`` confidence maps and their global peaks ``vals, rows, cols``
        ``(M, C)`` (``global_peaks``) -> the same three with the weaker node of each pair moved."""
        _, _, h, w = (int(v) for v in cm.shape)  # static map sizes; the batch stays dynamic
        n = int(self.group.shape[0])
        sub = cm.index_select(1, self.group)  # (M, G, h, w)
        v0, r0, c0 = (t.index_select(1, self.group) for t in (vals, rows, cols))
        # local maxima, multiplied out (0 elsewhere) rather than selected: cheaper in ONNX
        # Runtime than a full-size Where
        candidates = sub * (sub == F.max_pool2d(sub, 3, stride=1, padding=1)).to(cm.dtype)
        yy = torch.arange(h, device=cm.device).reshape(1, 1, h, 1)
        xx = torch.arange(w, device=cm.device).reshape(1, 1, 1, w)
        in_rows = ((yy - r0[..., None, None]).abs() <= self.exclusion).to(cm.dtype)  # (M, G, h, 1)
        in_cols = ((xx - c0[..., None, None]).abs() <= self.exclusion).to(cm.dtype)  # (M, G, 1, w)
        candidates = candidates - candidates * (in_rows * in_cols)
        v1, idx1 = candidates.reshape(-1, n, h * w).max(dim=2)
        dy, dx = r0[:, :, None] - r0[:, None, :], c0[:, :, None] - c0[:, None, :]
        near = (dy * dy + dx * dx <= self.min_distance2) & self.others
        stronger = (v0[:, None, :] > v0[:, :, None]) | ((v0[:, None, :] == v0[:, :, None]) & self.earlier)
        move = (near & stronger).any(dim=2) & (v1 > 0)  # (M, G)
        to_channels = self.to_channels.to(cm.dtype)
        moved = (move.to(cm.dtype) @ to_channels) > 0.5  # (M, C)
        new_rows = torch.round((idx1 // w).to(cm.dtype) @ to_channels).to(rows.dtype)
        new_cols = torch.round((idx1 % w).to(cm.dtype) @ to_channels).to(cols.dtype)
        return (torch.where(moved, v1 @ to_channels, vals), torch.where(moved, new_rows, rows),
                torch.where(moved, new_cols, cols))
