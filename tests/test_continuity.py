"""Identity continuity: where the identity head calls two animals the same class, the
previous frame's identities are kept by position; everywhere else the head decides."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest

from rtpose.data.video import VideoReader
from rtpose.engine.base import assign_identities, load_engine
from rtpose.engine.continuity import IdentityContinuity
from rtpose.poses import Poses

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "flies13"


def poses_at(centres: list[tuple[float, float]], probs: list[list[float]]) -> Poses:
    """Two-node instances around the given centres, identities by the Hungarian rule."""
    pts = np.array([[[x - 5, y], [x + 5, y]] for x, y in centres], np.float32)
    p = np.array(probs, np.float32)
    return Poses(points=pts, point_scores=np.ones(pts.shape[:2], np.float32),
                 instance_scores=np.ones(len(pts), np.float32), identity=assign_identities(p), identity_scores=p)


CONFIDENT = [[0.99, 0.01], [0.02, 0.98]]
BOTH_MALE = [[2.0e-6, 1.0], [3.0e-6, 1.0]]  # the head's assignment: a toss between tiny numbers


def test_decisive_frames_are_left_to_the_head():
    follow = IdentityContinuity(2)
    first = poses_at([(100, 100), (200, 100)], CONFIDENT)
    assert follow(first, 0) is first
    swapped = poses_at([(100, 100), (200, 100)], CONFIDENT[::-1])  # the head changed its mind, decisively
    assert list(follow(swapped, 1).identity) == [1, 0] and follow.followed == 0


def test_an_undecided_frame_keeps_the_previous_identities_by_position():
    follow = IdentityContinuity(2)
    follow(poses_at([(100, 100), (200, 100)], CONFIDENT), 10)  # instance at x=100 is class 0
    ambiguous = poses_at([(203, 101), (102, 99)], BOTH_MALE)  # slots in the other order, animals moved a little
    assert list(ambiguous.identity) == [1, 0]  # the head's toss happens to name x=203 class 1
    ambiguous = attrs.evolve(ambiguous, identity=np.array([0, 1], np.int32))  # ...and the other way round here
    out = follow(ambiguous, 11)
    assert list(out.identity) == [1, 0] and follow.followed == 1
    assert out.identity_scores is ambiguous.identity_scores  # the head's probabilities are reported as they were
    # the next undecided frame follows the followed one
    assert list(follow(poses_at([(104, 98), (205, 102)], BOTH_MALE), 12).identity) == [0, 1]


@pytest.mark.parametrize("case", ["gap", "jump", "one animal", "first frame"])
def test_continuity_does_not_guess(case):
    follow = IdentityContinuity(2, max_gap_frames=5, max_step_px=50)
    if case != "first frame":
        follow(poses_at([(100, 100), (200, 100)], CONFIDENT), 0)
    frame, centres = 1, [(200, 100), (100, 100)]
    if case == "gap":
        frame = 7
    elif case == "jump":
        centres = [(400, 400), (100, 100)]
    elif case == "one animal":
        centres = centres[:1]
    ambiguous = poses_at(centres, BOTH_MALE[: len(centres)])
    out = follow(ambiguous, frame)
    assert np.array_equal(out.identity, ambiguous.identity) and follow.followed == 0


def test_real_poses_through_an_undecided_stretch(flies_video_path):
    """Real poses of the fly clip; from frame 1153 the head's output is replaced by an
    undecided one whose toss names the flies the wrong way round."""
    engine = load_engine(SHIPPED, "ort-cpu")
    follow = IdentityContinuity(engine.spec.n_classes)
    truth = {}
    with VideoReader(flies_video_path) as reader:
        for index in range(1150, 1160):
            poses = engine.infer(reader.read(index))
            assert len(poses) == 2
            truth[index] = poses.identity.copy()
            if index >= 1153:
                poses = attrs.evolve(poses, identity=poses.identity[::-1].copy(),
                                     identity_scores=np.array(BOTH_MALE, np.float32))
            assert np.array_equal(follow(poses, index).identity, truth[index]), index
    assert follow.followed == 7
