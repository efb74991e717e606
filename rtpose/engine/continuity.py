"""Identities that follow the animals where the identity head is not decisive.

The centered-instance network names each animal from its crop alone, frame by frame, as
in the paper. When two animals touch, both crops can hold much of both animals, and the
head may call both of them the same class. Hungarian matching still gives each class one
instance, but then by a difference of a few parts per million between the two
probabilities: a coin toss that flips identities for single frames (seen on the fly clip
in close courtship). Where that happens, and only there, the animals keep the identities
they had in the previous frame, matched by position: at camera rates an animal moves a
few pixels between frames, far less than the distance between two animals.
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.optimize import linear_sum_assignment

from rtpose.poses import Poses


@attrs.define
class IdentityContinuity:
    """Per-stream state: call it on every frame's Poses, in frame order.

    Attributes:
        n_classes: identity classes of the model.
        min_probability: an assignment is decisive when every assigned instance has at
            least this probability for its class.
        max_gap_frames: positions older than this many frames are not followed.
        max_step_px: an instance further than this from every remembered animal is not
            matched by position (it may be a newcomer); the head's assignment stands.
    """

    n_classes: int
    min_probability: float = 0.5
    max_gap_frames: int = 5
    max_step_px: float = 50.0
    followed: int = attrs.field(default=0, init=False)  # frames whose identities came from continuity
    _centres: np.ndarray | None = attrs.field(default=None, init=False)  # (classes, 2), NaN: unknown
    _frame: int | None = attrs.field(default=None, init=False)

    def __call__(self, poses: Poses, frame_index: int) -> Poses:
        centres = _instance_centres(poses)
        identity = poses.identity
        if not self._decisive(poses) and self._recent(frame_index):
            followed = self._follow(centres)
            if followed is not None:
                identity = followed
                self.followed += 1
        if len(poses):
            self._remember(centres, identity, frame_index)
        if identity is poses.identity:
            return poses
        return attrs.evolve(poses, identity=identity)

    def _decisive(self, poses: Poses) -> bool:
        assigned = np.flatnonzero(poses.identity >= 0)
        if assigned.size == 0:
            return True
        probs = poses.identity_scores[assigned, poses.identity[assigned]]
        return bool(np.all(probs >= self.min_probability))

    def _recent(self, frame_index: int) -> bool:
        return self._frame is not None and 0 < frame_index - self._frame <= self.max_gap_frames

    def _follow(self, centres: np.ndarray) -> np.ndarray | None:
        known = np.flatnonzero(np.isfinite(self._centres[:, 0]))
        found = np.flatnonzero(np.isfinite(centres[:, 0]))
        if known.size < 2 or found.size < 2:  # one animal alone has nothing to be confused with
            return None
        dist = np.linalg.norm(centres[found][:, None] - self._centres[known][None], axis=-1)
        rows, cols = linear_sum_assignment(dist)
        if np.any(dist[rows, cols] > self.max_step_px):
            return None
        identity = np.full(len(centres), -1, np.int32)
        identity[found[rows]] = known[cols]
        return identity

    def _remember(self, centres: np.ndarray, identity: np.ndarray, frame_index: int) -> None:
        self._centres = np.full((self.n_classes, 2), np.nan)
        for row, cls in enumerate(identity):
            if cls >= 0:
                self._centres[cls] = centres[row]
        self._frame = frame_index


def _instance_centres(poses: Poses) -> np.ndarray:
    """Mean of each instance's found nodes (NaN when it has none)."""
    found = np.isfinite(poses.points).all(axis=-1)
    count = found.sum(axis=1, keepdims=True)
    total = np.where(found[..., None], poses.points, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
