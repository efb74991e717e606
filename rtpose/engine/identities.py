"""Identity assignment: one instance per class (host side, after the graph).

Its own module so that the self-check (rtpose.engine.selfcheck) and the engines
(rtpose.engine.base, which re-exports it) share it without importing each other.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def assign_identities(class_probs: np.ndarray) -> np.ndarray:
    """One instance per class, maximising summed log-probability (Hungarian).

    Instances left without a class (more instances than classes) get -1.
    """
    n = class_probs.shape[0]
    identity = np.full(n, -1, np.int32)
    if n == 0 or class_probs.shape[1] == 0:
        return identity
    cost = -np.log(np.clip(class_probs, 1e-9, 1.0))
    rows, cols = linear_sum_assignment(cost)
    identity[rows] = cols
    return identity
