"""Feature geometry with answers known by construction: mm, degrees, mm/s, and NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtpose.errors import RtposeError
from rtpose.poses import Poses
from rtpose.rules import FeatureSet, TriggerSections
from rtpose.rules.features import direction_degrees, wrap_degrees

NODES = ["head", "thorax", "abdomen"]
CLASSES = ["female", "male"]
PX_PER_MM = 30.3


def make_poses(animals: dict[int, dict[str, tuple[float, float]]]) -> Poses:
    """One instance per entry (class index -> node -> (x, y)); unlisted nodes are NaN."""
    n = len(animals)
    points = np.full((n, len(NODES), 2), np.nan, np.float32)
    for row, nodes in enumerate(animals.values()):
        for node, xy in nodes.items():
            points[row, NODES.index(node)] = xy
    return Poses(points, np.ones((n, len(NODES)), np.float32), np.ones(n, np.float32),
                 np.array(list(animals), np.int32), np.full((n, len(CLASSES)), 0.5, np.float32))


def features(yaml_like: dict, px_per_mm: float = PX_PER_MM) -> FeatureSet:
    sections = TriggerSections.model_validate({"features": yaml_like})
    return FeatureSet(sections.features, NODES, CLASSES, px_per_mm)


def compute_one(config: dict, poses: Poses, t: float = 0.0) -> float:
    return features({"f": config}).compute(poses, t)[0]


FEMALE, MALE = 0, 1


def test_distance_in_mm():
    # 1.5 mm at 30.3 px/mm, along a diagonal so both coordinates matter.
    step = 1.5 * PX_PER_MM / math.sqrt(2)
    poses = make_poses({FEMALE: {"abdomen": (200 + step, 300 - step)}, MALE: {"head": (200, 300)}})
    assert compute_one({"distance": ["male.head", "female.abdomen"]}, poses) == pytest.approx(1.5, abs=1e-5)


def test_distance_within_one_animal_is_body_length():
    poses = make_poses({MALE: {"head": (0, 0), "abdomen": (0, 2.5 * PX_PER_MM)}})
    assert compute_one({"distance": ["male.head", "male.abdomen"]}, poses) == pytest.approx(2.5)


@pytest.mark.parametrize("head, expected", [
    ((10, 0), 0.0), ((10, 10), 45.0), ((0, 10), 90.0), ((-10, 0), 180.0), ((0, -10), -90.0), ((-10, -10), -135.0),
])
def test_heading_degrees_in_image_coordinates(head, expected):
    poses = make_poses({MALE: {"thorax": (50, 50), "head": (50 + head[0], 50 + head[1])}})
    assert compute_one({"heading": "male", "from": "thorax", "to": "head"}, poses) == pytest.approx(expected)


@pytest.mark.parametrize("female_thorax, expected", [
    ((100, 0), 0.0),  # straight ahead
    ((-100, 0), 180.0),  # straight behind
    ((0, 100), 90.0),  # the +y side
    ((0, -100), -90.0),
    ((100, 100 * math.tan(math.radians(20))), 20.0),
    ((-100, -1e-3), -180.0 + math.degrees(1e-5)),  # just across the back seam
])
def test_angle_relative_to_heading(female_thorax, expected):
    poses = make_poses({MALE: {"thorax": (0, 0), "head": (40, 0)}, FEMALE: {"thorax": female_thorax}})
    config = {"angle": "female.thorax", "relative_to": "male", "from": "thorax", "to": "head"}
    assert compute_one(config, poses) == pytest.approx(expected, abs=1e-6)


def test_angle_follows_a_rotated_heading():
    # Male faces down the image (+90); a female to his +x side lies at -90 relative to him.
    poses = make_poses({MALE: {"thorax": (0, 0), "head": (0, 40)}, FEMALE: {"thorax": (100, 0)}})
    config = {"angle": "female.thorax", "relative_to": "male", "from": "thorax", "to": "head"}
    assert compute_one(config, poses) == pytest.approx(-90.0)


def test_angle_origin_can_be_another_node():
    # Seen from the thorax the female is 45 deg off; seen from the head she is 90 deg off.
    poses = make_poses({MALE: {"thorax": (0, 0), "head": (40, 0)}, FEMALE: {"thorax": (40, 40)}})
    base = {"angle": "female.thorax", "relative_to": "male", "from": "thorax", "to": "head"}
    assert compute_one(base, poses) == pytest.approx(45.0)
    assert compute_one({**base, "origin": "head"}, poses) == pytest.approx(90.0)


def test_speed_between_consecutive_frames():
    speed = features({"s": {"speed": "male.thorax"}})
    at = lambda x, y: make_poses({MALE: {"thorax": (x, y)}})  # noqa: E731
    assert math.isnan(speed.compute(at(0, 0), 10.0)[0])  # nothing to compare with yet
    # 3 mm in 0.1 s, split 3-4-5 over x and y.
    assert speed.compute(at(0.6 * 3 * PX_PER_MM, 0.8 * 3 * PX_PER_MM), 10.1)[0] == pytest.approx(30.0)
    assert math.isnan(speed.compute(make_poses({}), 10.2)[0])  # the male is gone
    assert math.isnan(speed.compute(at(0, 0), 10.4)[0])  # previous frame lacked the point
    assert speed.compute(at(0, PX_PER_MM), 10.6)[0] == pytest.approx(5.0)
    assert math.isnan(speed.compute(at(0, 0), 10.6)[0])  # no time passed
    speed.reset()
    assert math.isnan(speed.compute(at(0, 0), 11.0)[0])


def test_missing_identity_node_or_direction_gives_nan():
    configs = {
        "d": {"distance": ["male.head", "female.abdomen"]},
        "h": {"heading": "male", "from": "thorax", "to": "head"},
        "a": {"angle": "female.thorax", "relative_to": "male", "from": "thorax", "to": "head"},
    }
    feature_set = features(configs)
    only_male = make_poses({MALE: {"head": (10, 0), "thorax": (0, 0)}})
    d, h, a = feature_set.compute(only_male, 0.0)
    assert math.isnan(d) and h == 0.0 and math.isnan(a)
    female_without_abdomen = make_poses({MALE: {"head": (10, 0), "thorax": (0, 0)}, FEMALE: {"thorax": (5, 5)}})
    d, h, a = feature_set.compute(female_without_abdomen, 0.0)
    assert math.isnan(d) and h == 0.0 and a == pytest.approx(45.0)
    collapsed = make_poses({MALE: {"head": (3, 3), "thorax": (3, 3)}, FEMALE: {"thorax": (5, 5), "abdomen": (3, 3)}})
    d, h, a = feature_set.compute(collapsed, 0.0)
    assert d == 0.0 and math.isnan(h) and math.isnan(a)
    assert all(math.isnan(v) for v in feature_set.compute(make_poses({}), 0.0))


def test_unidentified_instances_are_ignored_and_the_first_of_a_class_wins():
    points = np.array([[[0, 0], [1, 1], [2, 2]], [[99, 99], [9, 9], [9, 9]], [[30.3, 0], [5, 5], [5, 5]]], np.float32)
    poses = Poses(points, np.ones((3, 3), np.float32), np.ones(3, np.float32), np.array([-1, 1, 1], np.int32),
                  np.ones((3, 2), np.float32))
    assert compute_one({"distance": ["male.head", "male.abdomen"]}, poses) == pytest.approx(
        math.hypot(99 - 9, 99 - 9) / PX_PER_MM)


def test_wrap_and_direction_helpers():
    assert wrap_degrees(-180.0) == 180.0 and wrap_degrees(540.0) == 180.0 and wrap_degrees(-190.0) == 170.0
    assert math.isnan(wrap_degrees(math.nan))
    assert math.isnan(direction_degrees(1, 1, 1, 1)) and math.isnan(direction_degrees(math.nan, 0, 1, 1))


def test_unknown_names_and_bad_scale_are_user_errors():
    with pytest.raises(RtposeError, match="features.f: unknown node 'heda'"):
        features({"f": {"distance": ["male.heda", "female.abdomen"]}})
    with pytest.raises(RtposeError, match="px_per_mm"):
        features({"f": {"speed": "male.head"}}, px_per_mm=0)
