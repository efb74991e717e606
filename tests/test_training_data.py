"""Training samples: frame selection, splits and augmentation that keeps image and
points together, on the real fly labels."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from rtpose.data.augment import AugmentParams, affine_about, transform_points, warp
from rtpose.data.labels import load_labels, user_frames
from rtpose.data.samples import (CentroidSamples, FrameCache, InstanceSamples, box_downscale, mirror_order,
                                 parse_frame_selection, select_frames, split_frames, suggest_crop_size)
from rtpose.errors import RtposeError


@pytest.fixture(scope="module")
def fly_frames(flies_labels_path):
    return user_frames(load_labels(flies_labels_path), flies_labels_path)


@pytest.fixture(scope="module")
def moving_frames(fly_frames):
    return select_frames(fly_frames, "1100-1199:20")


@pytest.fixture(scope="module")
def cache(moving_frames):
    return FrameCache(moving_frames)


def test_frame_selection_syntax(fly_frames):
    assert parse_frame_selection("0-999:10, 1000-1149") == [(0, 999, 10), (1000, 1149, 1)]
    assert len(select_frames(fly_frames, "0-999:10, 1000-1149")) == 250
    with pytest.raises(RtposeError, match="START-END"):
        parse_frame_selection("10..20")
    with pytest.raises(RtposeError, match="empty"):
        parse_frame_selection("20-10")


def test_splits_never_overlap(fly_frames):
    train, val = split_frames(fly_frames, "0-1199", "1150-1199", None, seed=0)
    assert len(train) == 1150 and len(val) == 50
    train, val = split_frames(fly_frames, "1000-1199", None, 0.1, seed=0)
    assert len(val) == 20 and not {f.frame_idx for f in train} & {f.frame_idx for f in val}


def test_box_downscale_is_block_mean():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    small = box_downscale(img, 0.25)
    assert small.shape == (2, 2) and small[0, 0] == pytest.approx(img[:4, :4].mean())


def test_warp_and_points_stay_together():
    """A bright dot drawn at a point is still under the transformed point after warping."""
    img = np.zeros((101, 101), np.float32)
    pt = np.array([[62.0, 40.0]], np.float32)
    img[40, 62] = 1.0
    m = affine_about(np.array([50.0, 50.0]), np.array([30.0, 30.0]), 73.0, 1.0)
    out = warp(img, m, (64, 64))
    x, y = transform_points(pt, m)[0]
    peak = np.unravel_index(np.argmax(out), out.shape)
    assert abs(peak[0] - y) <= 1 and abs(peak[1] - x) <= 1


def test_instance_crops_are_centred_on_the_anchor(moving_frames, cache):
    samples = InstanceSamples(moving_frames, cache, anchor_index=1, crop_size=144, sigma=2.5, output_stride=2,
                              center_jitter_px=0.0, augment=AugmentParams())
    assert len(samples) == 2 * len(moving_frames)
    crop, cm, pts = samples.sample(0, rng=None)
    assert crop.shape == (1, 144, 144) and cm.shape == (13, 72, 72)
    assert np.abs(pts[1] - 72).max() <= 0.5  # thorax at the crop centre (integer-centred)
    # The target peaks sit where the points are (map pixel = (input - 0.5) / 2).
    r, c = np.unravel_index(np.argmax(cm[1]), cm[1].shape)
    assert abs(c - (pts[1, 0] - 0.5) / 2) <= 0.5 and abs(r - (pts[1, 1] - 0.5) / 2) <= 0.5
    # The fly is bright on a dark background: the crop centre is brighter than its corners.
    assert crop[0, 60:84, 60:84].mean() > 2 * crop[0, :16, :16].mean()


def test_augmented_crops_keep_points_on_the_fly(moving_frames, cache):
    samples = InstanceSamples(moving_frames, cache, anchor_index=1, crop_size=144, sigma=2.5, output_stride=2,
                              center_jitter_px=4.0, augment=AugmentParams(noise=0.0, brightness=0.0,
                                                                          contrast=(1.0, 1.0)))
    rng = np.random.default_rng(0)
    plain = []
    for i in range(len(samples)):
        crop, _, pts = samples.sample(i, rng)
        thorax = np.round(pts[1]).astype(int)
        assert np.abs(pts[1] - 72).max() <= 4.0 + 1e-3
        plain.append(crop[0, thorax[1] - 2: thorax[1] + 3, thorax[0] - 2: thorax[0] + 3].mean())
    assert np.mean(plain) > 0.35  # the thorax is on a bright fly after any rotation


def test_centroid_samples_scale_points_and_pad(moving_frames, cache):
    samples = CentroidSamples(moving_frames, cache, anchor_index=1, input_scale=0.125, sigma=1.5,
                              output_stride=2, multiple=16, augment=AugmentParams())
    image, cm = samples.sample(0, None)
    assert image.shape == (1, 128, 128) and cm.shape == (1, 64, 64)
    assert np.isclose(cm.max(), 1.0, atol=0.15) and len(samples.anchors[0]) == 2


def test_crop_size_suggestion_holds_every_node(fly_frames):
    size, radius = suggest_crop_size(fly_frames, anchor_index=1, multiple=16)
    assert size % 16 == 0 and size / 2 >= radius
    assert 60 < radius < 90  # flies at 30.3 px/mm


def test_a_pasted_neighbour_adds_a_fly_beside_the_centred_one(moving_frames, cache):
    """Neighbour augmentation: the same crop and targets as without it, plus another
    fly's body (of the other class) merged in away from the centre."""
    quiet = dict(noise=0.0, brightness=0.0, contrast=(1.0, 1.0), rotation_deg=0.0, scale=(1.0, 1.0))
    plain = InstanceSamples(moving_frames, cache, anchor_index=1, crop_size=144, sigma=2.5, output_stride=2,
                            center_jitter_px=0.0, augment=AugmentParams(**quiet))
    pasted = InstanceSamples(moving_frames, cache, anchor_index=1, crop_size=144, sigma=2.5, output_stride=2,
                             center_jitter_px=0.0, augment=AugmentParams(**quiet, neighbour_probability=1.0,
                                                                        neighbour_distance_px=(60.0, 70.0)))
    assert 40 < pasted.body_radius < 72  # a fly reaches ~2 mm from its thorax at 30 px/mm
    assert pasted.classes[pasted._neighbour(0, np.random.default_rng(0))] != pasted.classes[0]
    for i in range(len(pasted)):
        a, cm_a, pts_a = plain.sample(i, np.random.default_rng(i))
        b, cm_b, pts_b = pasted.sample(i, np.random.default_rng(i))
        assert np.array_equal(pts_a, pts_b) and np.array_equal(cm_a, cm_b)  # targets: the centred fly only
        assert np.all(b >= a - 1e-6)  # merged by maximum
        added = (b - a)[0] > 0.2
        assert added.sum() > 200, i  # a fly's worth of bright pixels
        yy, xx = np.nonzero(added)
        assert np.hypot(xx - 71.5, yy - 71.5).max() > 50  # ...reaching in from beside the centred fly


def test_mirrored_crops_trade_left_and_right_names(moving_frames, cache):
    """A mirrored crop is the plain crop flipped about its centre column, and each node of
    a symmetric pair takes its partner's place (the left wing is where a right wing goes)."""
    names = ["head", "thorax", "abdomen", "wingL", "wingR", "forelegL4", "forelegR4", "midlegL4", "midlegR4",
             "hindlegL4", "hindlegR4", "eyeL", "eyeR"]
    order = mirror_order(names, [("wingL", "wingR"), ("eyeL", "eyeR")])
    assert list(order[[3, 4, 11, 12, 0]]) == [4, 3, 12, 11, 0]
    plain = AugmentParams(rotation_deg=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=(1.0, 1.0), noise=0.0)
    kwargs = dict(anchor_index=1, crop_size=144, sigma=2.5, output_stride=2, center_jitter_px=0.0)
    ref = InstanceSamples(moving_frames, cache, augment=plain, **kwargs)
    mirrored = InstanceSamples(moving_frames, cache, augment=attrs.evolve(plain, flip_probability=1.0),
                               mirror_order=order, **kwargs)
    crop, _, pts = ref.sample(3, np.random.default_rng(0))
    mcrop, mcm, mpts = mirrored.sample(3, np.random.default_rng(0))
    # the anchor (an integer place in the patch) stays at the crop centre; x mirrors about it
    cx = pts[1, 0]
    expect = pts[order].copy()
    expect[:, 0] = 2 * cx - expect[:, 0]
    np.testing.assert_allclose(mpts, expect, atol=1e-3)
    # the image mirrors about the same column: compare the central band, away from borders
    c = int(round(cx))
    band = slice(c - 40, c + 41)
    np.testing.assert_allclose(mcrop[0, :, band], crop[0, :, band][:, ::-1], atol=1e-4)
    # and the target of wingL peaks where the plain crop's right wing was, mirrored
    r, col = np.unravel_index(np.argmax(mcm[3]), mcm[3].shape)
    assert abs(col * 2 + 0.5 - (2 * cx - pts[4, 0])) <= 1.0 and abs(r * 2 + 0.5 - pts[4, 1]) <= 1.0
    with pytest.raises(RtposeError, match="'wingX' is not a node"):
        mirror_order(names, [("wingL", "wingX")])
    with pytest.raises(RtposeError, match="more than one pair"):
        mirror_order(names, [("wingL", "wingR"), ("wingL", "eyeL")])
