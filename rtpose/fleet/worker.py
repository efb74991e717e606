"""The Ray actor: one loaded engine per worker, predicting chunk after chunk.

Plain classes here; :mod:`rtpose.fleet.run` wraps them with ``ray.remote`` at run time,
so importing this module needs no Ray.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from rtpose.engine.base import load_engine
from rtpose.engine.predict import predict_frames
from rtpose.errors import RtposeError
from rtpose.fleet.store import pack
from rtpose.machine import cpu_name


class PredictWorker:
    """Loads the export once and predicts chunks of frames with it.

    Args:
        files: the export's files by name (see :func:`rtpose.fleet.plan.model_files`),
            written to a temporary folder on the worker's node; or a one-element list
            holding a Ray reference to them (nested, so that the driver owns the object
            and a restarted worker can fetch it again).
        engine_name: engine to load (``ort-cpu``, ...).
        threads: ONNX Runtime intra-op threads (CPU engines); workers x threads should
            not exceed a node's cores.
        batch_size: frames per engine call.
    """

    def __init__(self, files: dict[str, bytes] | list, engine_name: str, threads: int, batch_size: int):
        if isinstance(files, list):
            import ray

            files = ray.get(files[0])
        self._dir = Path(tempfile.mkdtemp(prefix="rtpose-fleet-model-"))
        for name, data in files.items():
            (self._dir / name).write_bytes(data)
        options = {"threads": threads} if engine_name.startswith("ort-") else {}
        self.engine = load_engine(self._dir, engine_name, **options)
        self.batch_size = batch_size
        self.machine = {"host": platform.node(), "cpu": cpu_name(), "pid": os.getpid(), "device": self.engine.device}

    def ready(self) -> dict[str, Any]:
        """Where this worker runs (host, CPU, process id, engine device)."""
        return self.machine

    def predict(self, video: str, indices: Sequence[int], chunk_id: str, progress: Any = None) -> dict[str, Any]:
        """Predict one chunk.

        Args:
            video: path of the video, as this node sees it.
            indices: the chunk's frame indices, in order.
            chunk_id: reported to ``progress`` with the frames done so far.
            progress: a :class:`FrameCounter` actor handle, or None.

        Returns:
            ``arrays`` (see :func:`rtpose.fleet.store.pack`), ``seconds`` of work and
            ``machine``; or ``error`` (one line) when the video cannot be read at all.
        """
        t0 = time.perf_counter()
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress.set.remote(chunk_id, done)

        spec = self.engine.spec
        try:
            frames, undecoded = predict_frames(self.engine, video, indices, self.batch_size,
                                               skip_undecodable=True, on_batch=report)
        except RtposeError as exc:
            return {"error": str(exc), "machine": self.machine}
        arrays = pack(frames, undecoded, len(spec.node_names), spec.n_classes)
        return {"arrays": arrays, "seconds": time.perf_counter() - t0, "machine": self.machine}

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)


class FrameCounter:
    """Frames done per chunk in flight, as the workers report them (for the progress bar)."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def set(self, chunk_id: str, frames: int) -> None:
        self.done[chunk_id] = frames

    def forget(self, chunk_id: str) -> None:
        self.done.pop(chunk_id, None)

    def total(self) -> int:
        return sum(self.done.values())
