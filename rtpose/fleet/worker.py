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
from rtpose.engine.frames import DecodeReport
from rtpose.engine.predict import predict_frames
from rtpose.errors import RtposeError
from rtpose.fleet.store import pack
from rtpose.machine import cpu_name


class PredictWorker:
    """Loads the export once (on its first chunk) and predicts chunks of frames with it.

    The constructor takes only small arguments: a worker that Ray restarts after a crash
    is built again from them, and loads the model from the reference its next chunk
    carries.

    Args:
        engine_name: engine to load (``ort-cpu``, ...).
        threads: ONNX Runtime intra-op threads (CPU engines); workers x threads should
            not exceed a node's cores.
        batch_size: frames per engine call.
        precision: ``auto`` (the engine picks the graph for this node, see
            :func:`rtpose.engine.base.load_engine`), ``int8`` or ``fp32``.
    """

    def __init__(self, engine_name: str, threads: int, batch_size: int, precision: str = "auto"):
        self.engine_name, self.threads, self.batch_size, self.precision = engine_name, threads, batch_size, precision
        self.engine = None
        self.machine = {"host": platform.node(), "cpu": cpu_name(), "pid": os.getpid(), "device": None,
                        "graph": None}

    def _load(self, model: dict[str, bytes] | list) -> None:
        if isinstance(model, list):  # a Ray reference, nested so that the driver keeps owning it
            import ray

            model = ray.get(model[0])
        folder = Path(tempfile.mkdtemp(prefix="rtpose-fleet-model-"))
        try:  # the engines read the files while loading, not after
            for name, data in model.items():
                (folder / name).write_bytes(data)
            options = {"threads": self.threads} if self.engine_name.startswith("ort-") else {}
            self.engine = load_engine(folder, self.engine_name, self.precision, **options)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.machine["device"] = self.engine.device
        self.machine["graph"] = getattr(self.engine, "graph", None)

    def predict(self, model: dict[str, bytes] | list, video: str, indices: Sequence[int], chunk_id: str,
                progress: Any = None) -> dict[str, Any]:
        """Predict one chunk.

        Args:
            model: the export's files by name (see :func:`rtpose.fleet.plan.model_files`),
                or a one-element list holding a Ray reference to them; loaded on the first
                call, written to a temporary folder on the worker's node.
            video: path of the video, as this node sees it.
            indices: the chunk's frame indices, in order.
            chunk_id: reported to ``progress`` with the frames done so far.
            progress: a :class:`FrameCounter` actor handle, or None.

        Returns:
            ``arrays`` (see :func:`rtpose.fleet.store.pack`: the poses and the frames that
            could not be read), ``seconds`` of work and ``machine``; or ``error`` (one
            line) when the video cannot be opened at all.
        """
        if self.engine is None:
            self._load(model)
        t0 = time.perf_counter()
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress.set.remote(chunk_id, done)

        spec = self.engine.spec
        lost = DecodeReport()
        try:
            frames = predict_frames(self.engine, video, indices, self.batch_size, report=lost, on_batch=report)
        except RtposeError as exc:
            return {"error": str(exc), "machine": self.machine}
        arrays = pack(frames, lost, len(spec.node_names), spec.n_classes)
        return {"arrays": arrays, "seconds": time.perf_counter() - t0, "machine": self.machine}


class FrameCounter:
    """Frames done per chunk in flight, as the workers report them (for the progress bar)."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def set(self, chunk_id: str, frames: int) -> None:
        """Record that ``frames`` frames of chunk ``chunk_id`` are done."""
        self.done[chunk_id] = frames

    def forget(self, chunk_id: str) -> None:
        """Drop a chunk the driver has received (or given up on)."""
        self.done.pop(chunk_id, None)

    def total(self) -> int:
        """Frames done in the chunks still in flight."""
        return sum(self.done.values())
