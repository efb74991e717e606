"""``rtpose predict`` over many videos and many machines, on Ray.

One concept per module: :mod:`~rtpose.fleet.inputs` (which files, where their outputs
go), :mod:`~rtpose.fleet.plan` (chunks of frames and the key that says whether earlier
work still counts), :mod:`~rtpose.fleet.store` (chunk files and ``manifest.json``,
written atomically), :mod:`~rtpose.fleet.worker` (the Ray actor: one engine per worker)
and :mod:`~rtpose.fleet.run` (the driver: dispatch, progress, joining, summary).

Ray is the optional extra ``rtpose[fleet]``; nothing here imports it at module level, and
the rig never needs it.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from rtpose.errors import RtposeError

EXTRA_HINT = "pip install 'rtpose[fleet]'"


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line ``RtposeError`` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise RtposeError(f"predicting on several videos or with --workers/--ray needs Ray: {EXTRA_HINT}") from None
    return ray


def init_local_ray(ray: ModuleType, **options: Any) -> None:
    """Start a local Ray whose workers run at the driver's priority.

    Ray's raylet lowers its workers' priority by default (``worker_niceness``, 15: on a
    busy machine, measured here, a worker then got a tenth of the single-process
    ``predict``'s frame rate); Ray's own job manager sets it to 0, and so does this.

    Args:
        ray: the ``ray`` module.
        **options: passed to ``ray.init``.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(**options)
