"""What a fleet run keeps on disk: chunk files and ``manifest.json``, both written atomically.

A chunk file (``.npz``) holds the poses of one chunk exactly as the worker returned
them (float32 arrays, every class probability), so joining chunks gives the same input
to identity continuity as one process would. Every file is written to a temporary name
in the same folder and moved over the target with ``os.replace`` (atomic on POSIX), so
a run killed at any moment leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from rtpose.engine.frames import DecodeReport
from rtpose.errors import RtposeError
from rtpose.poses import Poses
from rtpose import jsonsafe

CHUNKS_DIR = ".rtpose-chunks"
LOCK_NAME = ".rtpose-fleet.lock"


def pack(frames: Sequence[tuple[int, Poses]], lost: DecodeReport, n_nodes: int,
         n_classes: int) -> dict[str, np.ndarray]:
    """``(frame_index, Poses)`` pairs and what could not be read -> flat arrays.

    Returns:
        ``frame_idx`` (F,), ``counts`` (F,) instances per frame, ``points`` (N, nodes, 2),
        ``point_scores`` (N, nodes), ``instance_scores`` (N,), ``identity`` (N,),
        ``identity_scores`` (N, classes) with N = ``counts.sum()`` (the instances of all
        frames stacked); from ``lost``: ``not_decoded`` (U,), ``past_end`` (P,), and
        ``stream_frames``, ``declared`` as 0-d arrays (-1: the stream did not end early).
    """
    poses = [p for _, p in frames]

    def cat(field: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        parts = [np.asarray(getattr(p, field), dtype) for p in poses]
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

    return {
        "frame_idx": np.array([i for i, _ in frames], np.int64),
        "counts": np.array([len(p) for p in poses], np.int64),
        "points": cat("points", (n_nodes, 2), np.float32),
        "point_scores": cat("point_scores", (n_nodes,), np.float32),
        "instance_scores": cat("instance_scores", (), np.float32),
        "identity": cat("identity", (), np.int32),
        "identity_scores": cat("identity_scores", (n_classes,), np.float32),
        "not_decoded": np.array(lost.not_decoded, np.int64),
        "past_end": np.array(lost.past_end, np.int64),
        "stream_frames": np.array(-1 if lost.stream_frames is None else lost.stream_frames, np.int64),
        "declared": np.array(lost.declared, np.int64),
    }


def unpack(arrays: dict[str, np.ndarray]) -> tuple[list[tuple[int, Poses]], DecodeReport]:
    """Inverse of :func:`pack`: ``(frame_index, Poses)`` pairs and the chunk's :class:`DecodeReport`."""
    bounds = np.concatenate([[0], np.cumsum(arrays["counts"])]).astype(np.int64)
    frames = []
    for k, idx in enumerate(arrays["frame_idx"]):
        a, b = bounds[k], bounds[k + 1]
        frames.append((int(idx), Poses(
            points=arrays["points"][a:b], point_scores=arrays["point_scores"][a:b],
            instance_scores=arrays["instance_scores"][a:b], identity=arrays["identity"][a:b],
            identity_scores=arrays["identity_scores"][a:b],
        )))
    ended = int(arrays["stream_frames"])
    lost = DecodeReport(not_decoded=[int(i) for i in arrays["not_decoded"]], stream_frames=None if ended < 0 else ended,
                        past_end=[int(i) for i in arrays["past_end"]], declared=int(arrays["declared"]))
    return frames, lost


def join_reports(reports: Sequence[DecodeReport]) -> DecodeReport:
    """One video's :class:`DecodeReport` from its chunks'.

    A chunk that starts past the real end of the stream finds the end at its first frame,
    so the video's end is the earliest any chunk found; frames past it are past the end.
    """
    ends = [r.stream_frames for r in reports if r.stream_frames is not None]
    end = min(ends) if ends else None
    not_decoded = sorted({i for r in reports for i in r.not_decoded if end is None or i < end})
    past_end = sorted({i for r in reports for i in r.past_end} | {i for r in reports for i in r.not_decoded
                                                                   if end is not None and i >= end})
    return DecodeReport(not_decoded=not_decoded, stream_frames=end, past_end=past_end,
                        declared=max((r.declared for r in reports), default=0))


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a chunk's arrays to ``path`` (.npz) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(path, lambda f: np.savez(f, **arrays))


def load_chunk(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a chunk file written by :func:`save_chunk`."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    _replace_atomically(path, lambda f: f.write((jsonsafe.dumps(data, indent=2) + "\n").encode()))


def load_manifest(path: Path) -> dict[str, Any]:
    """An earlier run's manifest, or an empty one when there is none.

    Raises:
        RtposeError: the file exists but is not a manifest (not JSON, or no ``videos``).
    """
    if not path.exists():
        return {"videos": {}, "runs": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RtposeError(f"{path}: not a readable manifest ({type(exc).__name__}); move it away to start afresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise RtposeError(f"{path}: not an rtpose manifest (no 'videos'); move it away to start afresh")
    data.setdefault("runs", [])
    return data


class OutDirLock:
    """An exclusive lock on an output folder: two runs never write one manifest.

    Raises:
        RtposeError: on entering, when another run holds the folder.
    """

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self._file = None

    def __enter__(self) -> "OutDirLock":
        self._file = open(self.path, "a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RtposeError(f"{self.path.parent}: another rtpose predict run is writing there") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def stale_temporaries(folder: Path) -> Iterator[Path]:
    """Temporary files a killed run left in ``folder`` (and its chunk folders)."""
    if folder.is_dir():
        yield from folder.glob(".*.tmp")
        yield from folder.glob(f"{CHUNKS_DIR}/*/.*.tmp")
