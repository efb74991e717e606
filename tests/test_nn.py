"""Networks, peak finding and the pixel conventions shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtpose.data.targets import (confidence_maps, input_to_map, instance_anchor, map_to_input, scale_coords,
                                 unscale_coords)
from rtpose.nn.models import CentroidNet, InstanceNet
from rtpose.nn.peaks import DistinctPeaks, global_peaks, local_peaks, refine
from rtpose.nn.unet import UNet, UNetSpec, count_parameters, fold_batchnorm


def test_unet_strides_and_shapes():
    spec = UNetSpec(filters=16, down_blocks=3, up_blocks=2, stem_stride=2)
    assert spec.max_stride == 16 and spec.output_stride == 4
    out, deepest = UNet(spec)(torch.zeros(2, 1, 64, 96))
    assert out.shape == (2, spec.output_channels, 16, 24)
    assert deepest.shape == (2, spec.bottleneck_channels, 4, 6)


def test_unet_receptive_field_matches_gradient_support():
    """The analytic receptive field bounds the input pixels that can move one output pixel."""
    torch.manual_seed(0)
    spec = UNetSpec(filters=4, down_blocks=2, up_blocks=2, stem_stride=1, batch_norm=False)
    net = UNet(spec)
    x = torch.zeros(1, 1, 96, 96, requires_grad=True)
    out, _ = net(x)
    out[0, :, 48, 48].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    support = int(rows.max() - rows.min() + 1)
    assert support <= net.receptive_field()
    assert support >= net.receptive_field() - 4  # tight, not a loose upper bound


def test_fold_batchnorm_preserves_outputs():
    torch.manual_seed(0)
    net = InstanceNet(UNetSpec(filters=8, down_blocks=2, up_blocks=1), n_nodes=3, n_classes=2)
    for m in net.modules():  # give BatchNorm non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        fold_batchnorm(net)
        after = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(before[0], after[0], atol=1e-5)
    assert torch.allclose(before[1], after[1], atol=1e-5)


def test_coordinate_conventions_round_trip():
    xy = np.array([[0.0, 0.0], [3.5, 7.25], [1023.0, 511.5]])
    assert np.allclose(unscale_coords(scale_coords(xy, 0.125), 0.125), xy)
    assert np.allclose(map_to_input(input_to_map(xy, 2), 2), xy)
    # Pixel 0 of a 1/8 box-averaged image is centred on frame pixel 3.5.
    assert np.allclose(scale_coords(np.array([3.5]), 0.125), 0.0)
    # Map pixel 0 at stride 2 is centred between input pixels 0 and 1.
    assert np.allclose(map_to_input(np.array([0.0]), 2), 0.5)


def test_confidence_maps_peak_where_the_points_are():
    pts = np.array([[[10.0, 20.0], [np.nan, np.nan]], [[30.0, 5.0], [40.0, 41.0]]], np.float32)
    cm = confidence_maps(pts, 50, 60, sigma=1.5)
    assert cm.shape == (2, 50, 60)
    assert cm[0, 20, 10] == pytest.approx(1.0) and cm[0, 5, 30] == pytest.approx(1.0)  # max over instances
    assert cm[1, 41, 40] == pytest.approx(1.0)
    assert cm[0, 20, 11] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-5)
    assert cm[1].max() == pytest.approx(1.0) and np.count_nonzero(cm[1] > 0.5) < 20


def test_instance_anchor_falls_back_to_bbox_centre():
    pts = np.array([[0.0, 0.0], [np.nan, np.nan], [10.0, 4.0]], np.float32)
    assert np.allclose(instance_anchor(pts, 0), [0, 0])
    assert np.allclose(instance_anchor(pts, 1), [5, 2])


@pytest.mark.parametrize("sigma", [1.0, 1.25, 1.5])
def test_refinement_recovers_subpixel_peaks(sigma):
    rng = np.random.default_rng(1)
    pts = rng.uniform(8, 40, size=(200, 1, 2)).astype(np.float32)
    cms = torch.from_numpy(np.stack([confidence_maps(p[None], 48, 48, sigma) for p in pts]))
    _, rows, cols = global_peaks(cms)
    err = {}
    for method in ("none", "integral", "quadratic"):
        ry, rx = refine(cms, rows.unsqueeze(-1), cols.unsqueeze(-1), method)
        err[method] = np.hypot(rx[..., 0].numpy() - pts[..., 0], ry[..., 0].numpy() - pts[..., 1])
    assert err["quadratic"].max() < 1e-3  # exact on Gaussian peaks
    assert err["integral"].mean() < err["none"].mean() / 2
    assert err["none"].max() <= np.sqrt(0.5) + 1e-6


def test_local_peaks_find_each_animal_once():
    cm = confidence_maps(np.array([[[10.0, 12.0]], [[40.0, 30.0]]], np.float32), 48, 64, 1.5)
    t = torch.from_numpy(cm)[None]  # (1, 1, 48, 64)
    vals, rows, cols = local_peaks(t, k=3, threshold=0.2)
    found = sorted((int(c), int(r)) for v, r, c in zip(vals[0], rows[0], cols[0]) if v > 0.2)
    assert found == [(10, 12), (40, 30)]
    assert float(vals[0, 2]) < 0.2  # the third slot is empty


def _maps(peaks_per_channel: list[list[tuple[int, int, float]]], h: int = 40, w: int = 40) -> torch.Tensor:
    """``(1, C, h, w)`` maps, each channel the max of Gaussians (x, y, height), sigma 1.5."""
    out = np.zeros((len(peaks_per_channel), h, w), np.float32)
    for c, peaks in enumerate(peaks_per_channel):
        for x, y, height in peaks:
            g = confidence_maps(np.array([[[x, y]]], np.float32), h, w, 1.5)[0] * height
            out[c] = np.maximum(out[c], g)
    return torch.from_numpy(out)[None]


def test_distinct_peaks_move_the_weaker_of_two_nodes_on_one_place_to_its_own_other_peak():
    # channel 0 and 1 both peak at (10, 10); 1 is weaker there and has its own peak at (30, 20);
    # channel 2 shares the place too but has no other peak; channel 3 is outside the group
    cm = _maps([[(10, 10, 1.0)], [(10, 10, 0.8), (30, 20, 0.6)], [(10, 10, 0.7)], [(10, 10, 0.9)]])
    vals, rows, cols = global_peaks(cm)
    v, r, c = DistinctPeaks([0, 1, 2], 4, min_distance=1.5, exclusion=4.0)(cm, vals, rows, cols)
    assert (int(c[0, 0]), int(r[0, 0]), float(v[0, 0])) == (10, 10, pytest.approx(1.0))
    assert (int(c[0, 1]), int(r[0, 1]), float(v[0, 1])) == (30, 20, pytest.approx(0.6, abs=1e-3))
    assert (int(c[0, 2]), int(r[0, 2])) == (10, 10)  # no other peak: it stays
    assert (int(c[0, 3]), int(r[0, 3])) == (10, 10)  # not in the group
    # apart, nothing moves; equal peaks on one place: the later node of the group moves
    apart = _maps([[(10, 10, 1.0)], [(20, 10, 0.8), (30, 30, 0.9)]])
    same = _maps([[(10, 10, 0.5), (25, 5, 0.3)], [(10, 10, 0.5), (30, 30, 0.4)]])
    for cm, expected in ((apart, [(10, 10), (30, 30)]), (same, [(10, 10), (30, 30)])):
        v, r, c = DistinctPeaks([0, 1], 2, min_distance=1.5, exclusion=4.0)(cm, *global_peaks(cm))
        assert [(int(c[0, k]), int(r[0, k])) for k in range(2)] == expected
    # the constants are buffers outside the state dict (the export's weights are the networks')
    assert DistinctPeaks([0, 1], 2, 1.5, 4.0).state_dict() == {}
    with pytest.raises(ValueError, match="two or more different channels"):
        DistinctPeaks([1, 1], 2, 1.5, 4.0)


def test_models_build_with_and_without_identity():
    c = CentroidNet(UNetSpec(filters=8, down_blocks=2, up_blocks=2))
    assert c(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 16, 16)
    with_id = InstanceNet(UNetSpec(filters=8, down_blocks=2, up_blocks=2), n_nodes=5, n_classes=2)
    cms, logits = with_id(torch.zeros(3, 1, 32, 32))
    assert cms.shape == (3, 5, 16, 16) and logits.shape == (3, 2)
    no_id = InstanceNet(UNetSpec(filters=8, down_blocks=2, up_blocks=2), n_nodes=5, n_classes=0)
    assert no_id(torch.zeros(1, 1, 32, 32))[1] is None
    assert count_parameters(with_id) > count_parameters(no_id)
