"""Chunks of frames, and the key that says whether work from an earlier run still counts.

A video's frame indices are cut into chunks of ``chunk_frames`` consecutive entries, so
one long video spreads over every worker as well as many short ones do. Chunks carry no
state between them: each worker returns the poses as the identity head gives them, and
the driver applies identity continuity to the joined frames in frame order, which makes
the result the same as one process's, whatever the chunk borders.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import attrs


DEFAULT_CHUNK_FRAMES = 500


@attrs.frozen
class Chunk:
    """Frames ``indices`` of the video ``video`` (its position in the run's input list)."""

    video: int
    indices: tuple[int, ...]

    @property
    def name(self) -> str:
        """``FIRST-LAST`` frame indices, zero-padded: the chunk's file stem."""
        return f"{self.indices[0]:08d}-{self.indices[-1]:08d}"

    def __len__(self) -> int:
        return len(self.indices)


def plan_chunks(video: int, indices: Sequence[int], chunk_frames: int) -> list[Chunk]:
    """Cut ``indices`` into chunks of at most ``chunk_frames`` entries, in order."""
    if chunk_frames < 1:
        raise ValueError("chunk_frames must be at least 1")
    return [Chunk(video, tuple(indices[i:i + chunk_frames])) for i in range(0, len(indices), chunk_frames)]


def model_files(export_dir: str | Path) -> dict[str, bytes]:
    """The files of the export (graphs, spec, reference outputs), by name.

    Sent to the workers through Ray's object store, so the nodes of a cluster need not
    see the export directory. Every regular file at the top of the folder goes (an export
    is a few MB); folders (a TensorRT cache) stay.
    """
    export_dir = Path(export_dir)
    return {p.name: p.read_bytes() for p in sorted(export_dir.iterdir()) if p.is_file()}


def files_digest(files: dict[str, bytes]) -> str:
    """SHA-1 over the files' names and contents."""
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name])
    return h.hexdigest()


def video_key(video: Path, indices: Sequence[int], model_digest: str, engine: str, batch_size: int,
              precision: str = "auto") -> str:
    """What a video's chunk files depend on, as a SHA-1 hex digest.

    The video file (path, size, modification time), the frames asked for, the model, the
    engine, the precision asked for and the batch size: a change in any of them makes
    earlier chunks of that video stale.
    """
    st = video.stat()
    what = {
        "video": str(video.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "frames": hashlib.sha1(json.dumps(list(indices)).encode()).hexdigest(),
        "model": model_digest, "engine": engine, "batch_size": batch_size, "precision": precision,
    }
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()


def size_workers(node_cpus: Sequence[int], n_chunks: int, workers: int | None = None,
                 threads: int | None = None) -> tuple[int, int]:
    """Workers and ONNX Runtime threads per worker so that workers x threads fits the cores.

    Each worker is a Ray actor asking for ``threads`` CPUs, so Ray places them only where
    they fit. By default there are as many workers as chunks, up to one per CPU, and each
    gets the most threads with which all of them still fit on the nodes.

    Args:
        node_cpus: CPUs of each node of the Ray cluster.
        n_chunks: chunks left to predict (more workers than chunks would idle).
        workers: workers asked for (``--workers``), or None.
        threads: threads per worker asked for (``--threads``), or None.

    Returns:
        ``(workers, threads)``.

    Raises:
        RtposeError: the workers asked for do not fit on the cluster's CPUs.
    """
    from rtpose.errors import RtposeError

    cpus = [int(c) for c in node_cpus if c >= 1]
    total = sum(cpus)
    if total == 0:
        raise RtposeError("the Ray cluster has no CPUs")

    def fits(w: int, t: int) -> bool:
        return sum(c // t for c in cpus) >= w

    if workers is None:
        workers = max(1, min(n_chunks, sum(c // (threads or 1) for c in cpus)))
    if threads is None:
        threads = max((t for t in range(1, max(cpus) + 1) if fits(workers, t)), default=0)
        if threads == 0:
            raise RtposeError(f"--workers {workers}: the Ray cluster has {total} CPUs "
                              f"({' + '.join(map(str, cpus))} over {len(cpus)} nodes); at most {total} workers")
    elif not fits(workers, threads):
        raise RtposeError(f"--workers {workers} x --threads {threads} do not fit on the Ray cluster's CPUs "
                          f"({' + '.join(map(str, cpus))} over {len(cpus)} nodes)")
    return workers, threads
