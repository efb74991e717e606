"""JSON as every rtpose file writes it: undefined figures (NaN, infinities) are ``null``.

Python's :mod:`json` writes NaN as a bare ``NaN``, which is not JSON (RFC 8259): strict
parsers (``jq``, JavaScript's ``JSON.parse``) refuse the whole file. The README promises
``null`` for figures that are undefined; :func:`dumps` keeps that promise for every
report, manifest and summary rtpose writes (``allow_nan=False`` makes a value that slipped
through an error, not a bad file).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def to_json_safe(value: Any) -> Any:
    """NaN and infinities -> None, numpy scalars and arrays -> Python values, recursively.

    Args:
        value: dicts (keys kept), lists, tuples, numpy arrays, floats, numpy scalars, others as they are.

    Returns:
        The same structure holding only values :func:`json.dumps` writes as strict JSON.
    """
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_safe(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`to_json_safe` ``(value)``: strict JSON, undefined figures ``null``.

    Args:
        value: what to write.
        **options: passed to :func:`json.dumps` (``indent``, ``sort_keys``, ``default``).

    Raises:
        TypeError: a value JSON has no form for (as :func:`json.dumps`).
    """
    return json.dumps(to_json_safe(value), allow_nan=False, **options)
