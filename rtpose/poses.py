"""The per-frame result every engine returns and every consumer reads.

Kept as plain numpy arrays so that the live loop, the publisher, the recorder and the
offline writers share one shape contract (see DESIGN.md, "Contracts worth keeping
stable").
"""

from __future__ import annotations

import attrs
import numpy as np


@attrs.define
class Poses:
    """Instances found in one frame.

    Attributes:
        points: ``(n, nodes, 2)`` float32, full-frame pixels (x, y); NaN where a node was
            not found.
        point_scores: ``(n, nodes)`` float32 confidence-map peak values.
        instance_scores: ``(n,)`` float32, the centroid peak value of each instance.
        identity: ``(n,)`` int32 class index per instance, -1 where none was assigned.
        identity_scores: ``(n, classes)`` float32 class probabilities.
    """

    points: np.ndarray
    point_scores: np.ndarray
    instance_scores: np.ndarray
    identity: np.ndarray
    identity_scores: np.ndarray

    @classmethod
    def empty(cls, n_nodes: int, n_classes: int) -> "Poses":
        return cls(
            points=np.zeros((0, n_nodes, 2), np.float32),
            point_scores=np.zeros((0, n_nodes), np.float32),
            instance_scores=np.zeros((0,), np.float32),
            identity=np.zeros((0,), np.int32),
            identity_scores=np.zeros((0, n_classes), np.float32),
        )

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def instance_of(self, class_index: int) -> int | None:
        """Row of the instance assigned to ``class_index``, or None when absent."""
        rows = np.flatnonzero(self.identity == class_index)
        return int(rows[0]) if rows.size else None
