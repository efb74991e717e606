"""Anchors of instances whose anchor node is hidden (``rtpose.data.anchors``): estimated
from the visible nodes, on a rigid toy body and on the real mice2 labels, where the
Trunk is hidden in 29% of the instances."""

from __future__ import annotations

import numpy as np
import pytest

from rtpose.data.anchors import attach_anchors, estimate_anchors, frame_anchors, hidden_anchors
from rtpose.data.labels import load_labels, node_names, user_frames
from rtpose.data.samples import CentroidSamples, FrameCache, InstanceSamples
from rtpose.data.augment import AugmentParams
from rtpose.data.targets import instance_anchor, scale_coords


def _rotate(points: np.ndarray, angle: float, shift: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, -s], [s, c]]).T + shift


def test_a_hidden_anchor_of_a_rigid_body_is_found_where_it_is():
    # an asymmetric body whose anchor (node 0) is far from its visible nodes' centre
    body = np.array([[0, 0], [40, 0], [60, 10], [55, -12], [80, 3]], np.float64)
    rng = np.random.default_rng(0)
    refs = [_rotate(body, rng.uniform(-np.pi, np.pi), rng.uniform(0, 500, 2)) for _ in range(20)]
    truth = _rotate(body, 2.0, np.array([300.0, 200.0]))
    hidden = truth.copy()
    hidden[0] = np.nan
    hidden[3] = np.nan  # and another node: references share the rest
    got = estimate_anchors(np.stack(refs + [hidden]), 0)
    assert np.allclose(got[-1], truth[0], atol=1e-3)
    # the bounding-box fallback is ~60 px away: the figure this module exists for
    assert np.linalg.norm(instance_anchor(hidden.astype(np.float32), 0) - truth[0]) > 40
    # visible anchors are the nodes themselves
    assert np.allclose(got[:-1], np.stack(refs)[:, 0], atol=1e-4)


def test_a_mirror_image_is_not_a_rigid_motion():
    # a reference that fits only by reflection must not win over a true rigid one
    body = np.array([[0, 0], [40, 0], [60, 20], [70, -5]], np.float64)
    mirrored = body * np.array([1, -1])
    truth = _rotate(body, 0.3, np.array([100.0, 100.0]))
    hidden = truth.copy()
    hidden[0] = np.nan
    got = estimate_anchors(np.stack([body, mirrored, hidden]), 0, k=1)
    assert np.allclose(got[-1], truth[0], atol=1e-3)


def test_an_estimate_outside_the_frame_falls_back_to_the_bounding_box(mice):
    # an animal leaving the view: the estimate would be where no centroid peak can be
    trunk, frames = mice
    frame = next(f for f in frames if f.frame_idx == 65)
    hidden = int(np.flatnonzero(~np.isfinite(frame.points[:, trunk]).all(axis=1))[0])
    inside = attach_anchors(frames, trunk, (768, 1024))
    cut = attach_anchors(frames, trunk, (355, 1024))  # the estimate (y ~308) stays; rows >= 355 are gone
    cut_x = attach_anchors(frames, trunk, (768, 370))  # the estimate (x ~378) is past the right edge
    a = next(f for f in inside if f.frame_idx == 65).anchors[hidden]
    assert np.allclose(next(f for f in cut if f.frame_idx == 65).anchors[hidden], a)
    assert np.allclose(next(f for f in cut_x if f.frame_idx == 65).anchors[hidden],
                       instance_anchor(frame.points[hidden], trunk))


def test_too_little_to_go_on_falls_back_to_the_bounding_box():
    one_node = np.array([[np.nan, np.nan], [5.0, 7.0], [np.nan, np.nan]])
    nothing = np.full((3, 2), np.nan)
    no_reference = np.array([[np.nan, np.nan], [0.0, 0.0], [10.0, 4.0]])
    got = estimate_anchors(np.stack([one_node, nothing, no_reference]), 0)
    assert np.allclose(got[0], [5, 7]) and np.isnan(got[1]).all() and np.allclose(got[2], [5, 2])


@pytest.fixture(scope="module")
def mice(mice_path):
    labels = load_labels(mice_path)
    return node_names(labels).index("Trunk"), user_frames(labels, mice_path)


def test_mice_trunk_hidden_in_29_percent_is_estimated_near_where_it_is(mice):
    trunk, frames = mice
    points = np.concatenate([f.points for f in frames])
    assert hidden_anchors(frames, trunk) == 34 and sum(len(f.points) for f in frames) == 119
    shown = np.flatnonzero(np.isfinite(points[:, trunk]).all(axis=1))
    est, box = [], []
    for i in shown:  # hide each labelled Trunk in turn and estimate it from the others
        held = points.copy()
        held[i, trunk] = np.nan
        est.append(np.linalg.norm(estimate_anchors(held, trunk)[i] - points[i, trunk]))
        box.append(np.linalg.norm(instance_anchor(held[i], trunk) - points[i, trunk]))
    # measured: estimate p50 2.6 px, p90 7.9 px; bounding-box centre p50 33 px, p90 51 px
    assert np.median(est) < 5 and np.percentile(est, 90) < 12
    assert np.median(box) > 4 * np.median(est)


def test_training_samples_centre_on_the_estimated_anchor(mice):
    trunk, frames = mice
    attached = attach_anchors(frames, trunk)
    frame = next(f for f in attached if f.frame_idx == 65)  # the black mouse's Trunk is hidden here
    hidden = int(np.flatnonzero(~np.isfinite(frame.points[:, trunk]).all(axis=1))[0])
    a = frame_anchors(frame, trunk)[hidden]
    assert np.linalg.norm(a - instance_anchor(frame.points[hidden], trunk)) > 30  # not the box centre
    assert np.linalg.norm(a - [378, 308]) < 10  # where the Trunk is labelled in frames 60-64 and 67-69
    # another anchor index is not served the stored anchors
    assert np.allclose(frame_anchors(frame, 0)[hidden], instance_anchor(frame.points[hidden], 0), equal_nan=True)
    cache = FrameCache([frame])
    aug = AugmentParams()
    c = CentroidSamples([frame], cache, trunk, 0.25, 2.0, 2, 16, aug)
    # the centroid target is there too, at input scale 1/4
    assert np.linalg.norm(c.anchors[0] - scale_coords(a[None], 0.25), axis=1).min() < 1e-3
    i = InstanceSamples([frame], cache, trunk, 192, 2.8, 2, 0.0, aug)
    crop, _, pts = i.sample(hidden, None)
    visible = np.isfinite(frame.points[hidden]).all(axis=1)
    # the crop's centre is the estimated anchor: the labelled nodes sit where they are relative to it
    offset = frame.points[hidden][visible] - np.round(a)
    assert np.allclose(pts[visible], offset + 96, atol=1e-3)


def test_flies_thorax_is_always_labelled_so_their_anchors_are_the_thorax(flies_labels_path):
    # the shipped fly models and their figures are untouched by the estimate
    labels = load_labels(flies_labels_path)
    thorax = node_names(labels).index("thorax")
    frames = user_frames(labels, flies_labels_path)
    assert hidden_anchors(frames, thorax) == 0
    attached = attach_anchors(frames, thorax, (1024, 1024))
    assert all(np.array_equal(f.anchors, f.points[:, thorax]) for f in attached)
