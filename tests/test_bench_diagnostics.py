"""The label-free diagnostics of bench/unlabeled_consistency.py (issue 10)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("unlabeled_consistency", REPO / "bench" / "unlabeled_consistency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_node_spike_is_a_one_frame_jump_that_comes_back():
    spikes = _bench().spikes
    t = np.arange(10, dtype=float)
    walk = np.stack([t * 3.0, np.zeros_like(t)], axis=-1)  # 3 px a frame: a steady walk
    points = np.repeat(walk[:, None, None], 2, axis=1).repeat(3, axis=2)  # (frames, classes, nodes, 2)
    points[4, 1, 2] += (0.0, 20.0)  # one frame on the neighbour's leg, then back
    points[7:, 0, 0] += (30.0, 0.0)  # a jump that stays: not a spike
    points[2, 0, 1] = np.nan  # a missing node: its neighbours are not judged by it
    got = spikes(points, 8.0)
    assert got.shape == (10, 2, 3)
    assert got[4, 1, 2]
    assert got.sum() == 1
