"""Predictions as SLEAP .slp files, written and read through sleap-io.

A predictions file is the hand-off between ``rtpose predict`` and everything after it
(``rtpose eval``, the SLEAP GUI for proofreading, sleap-nn's evaluator), so it uses
SLEAP's own data model rather than a format of ours: one ``PredictedInstance`` per
instance with its node scores and instance score, NaN nodes stored as invisible, and
each instance on a ``Track`` named after its identity class. Every class gets a track
even when no instance uses it, in class order, so the class index survives a round
trip. Frames where nothing was found are written as empty frames: "predicted, nothing
there" must stay distinguishable from "never predicted" when scored against labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import attrs
import numpy as np
import sleap_io as sio

from rtpose.data.labels import load_labels
from rtpose.errors import RtposeError
from rtpose.paths import clean_path
from rtpose.poses import Poses


def make_skeleton(node_names: Sequence[str], edges: Sequence[tuple[int, int] | tuple[str, str]]) -> sio.Skeleton:
    """A sleap-io skeleton from node names and edges given as index or name pairs."""
    names = list(node_names)
    named_edges = [(names[a], names[b]) if isinstance(a, (int, np.integer)) else (a, b) for a, b in edges]
    unknown = {n for e in named_edges for n in e} - set(names)
    if unknown:
        raise RtposeError(f"skeleton edges name unknown nodes: {', '.join(sorted(unknown))}")
    return sio.Skeleton(names, edges=named_edges)


def poses_to_instances(poses: Poses, skeleton: sio.Skeleton, tracks: Sequence[sio.Track]) -> list[sio.PredictedInstance]:
    """One ``PredictedInstance`` per row of ``poses``.

    ``tracking_score`` carries the probability of the assigned class, as SLEAP's ID
    models do, so a reader can tell a confident identity from a coin toss.
    """
    instances = []
    for row in range(len(poses)):
        cls = int(poses.identity[row])
        track = tracks[cls] if 0 <= cls < len(tracks) else None
        id_score = 0.0
        if track is not None and poses.identity_scores.shape[1] > cls:
            id_score = float(poses.identity_scores[row, cls])
        instances.append(sio.PredictedInstance.from_numpy(
            points_data=np.asarray(poses.points[row], np.float64),
            skeleton=skeleton,
            point_scores=np.asarray(poses.point_scores[row], np.float64),
            score=float(poses.instance_scores[row]),
            track=track,
            tracking_score=id_score,
        ))
    return instances


def check_slp_output(path: Path, folder_hint: str = "") -> None:
    """Refuse a predictions output that is not a ``.slp`` file (a folder, ``.h5``, ...);
    callers check it before any work, ``write_predictions`` again.

    Args:
        path: the output.
        folder_hint: said after "it is a folder" where ``path`` is one (``rtpose predict``:
            ``"several inputs write into one"``).

    Raises:
        RtposeError: one line naming ``path`` (and saying it is a folder, where it is one).
    """
    if path.is_dir():
        raise RtposeError(f"{path}: is a folder; predictions must be written to a .slp file"
                          f"{' (' + folder_hint + ')' if folder_hint else ''}")
    if path.suffix.lower() != ".slp":
        raise RtposeError(f"{path}: predictions must be written to a .slp file")


def write_predictions(
    path: str | Path,
    video_path: str | Path,
    node_names: Sequence[str],
    edges: Sequence[tuple[int, int] | tuple[str, str]],
    class_names: Sequence[str],
    frames: Iterable[tuple[int, Poses]],
    provenance: dict | None = None,
) -> Path:
    """Write ``(frame_idx, Poses)`` pairs of one video as a SLEAP predictions file.

    Identity -1 means "no class assigned" and gets no track. ``provenance`` (JSON-able
    values) is stored in the file's provenance, e.g. the frames that could not be read.
    ``video_path`` may be a SLEAP package (.pkg.slp): the file then refers to its embedded
    images, as SLEAP does for predictions on a package. The video's path is stored
    absolute, without ``..`` segments (:func:`stored_video_path`). The file is replaced
    atomically.
    Returns the path written.
    """
    path = Path(path)
    check_slp_output(path)
    skeleton = make_skeleton(node_names, edges)
    tracks = [sio.Track(name=str(name)) for name in class_names]
    # Opening the video (when it is here) stores its shape and colour mode in the file,
    # which SLEAP's GUI and sleap-io's video matching use; a missing video is no error.
    video = _video_of(Path(video_path))
    labeled_frames = []
    for frame_idx, poses in frames:
        if poses.points.shape[1:] != (len(skeleton.nodes), 2):
            raise RtposeError(
                f"{path}: frame {frame_idx} has points of shape {poses.points.shape}; "
                f"the skeleton has {len(skeleton.nodes)} nodes"
            )
        labeled_frames.append(sio.LabeledFrame(
            video=video, frame_idx=int(frame_idx), instances=poses_to_instances(poses, skeleton, tracks)
        ))
    labels = sio.Labels(labeled_frames=labeled_frames, videos=[video], skeletons=[skeleton], tracks=tracks,
                        provenance=dict(provenance or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved over it (atomic on POSIX): a run killed while
    # writing leaves the old file or the new one, never half an HDF5 file.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.slp")
    try:
        sio.save_slp(labels, str(tmp), verbose=False)
        os.replace(tmp, path)
    except OSError as exc:
        raise RtposeError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    finally:
        tmp.unlink(missing_ok=True)
        video.close()
    return path


def stored_video_path(video_path: str | Path) -> str:
    """The path a predictions file stores for its video: a file that is here as its
    absolute path with ``.`` and ``..`` segments folded (:func:`rtpose.paths.clean_path`:
    symlinks kept, unless a ``..`` follows one); anything else (a camera's name, a video
    since moved) as given, folded (``os.path.normpath``)."""
    folded = os.path.normpath(os.fspath(video_path))
    return clean_path(video_path) if os.path.exists(os.fspath(video_path)) or os.path.exists(folded) else folded


def _video_of(video_path: Path) -> sio.Video:
    video_path = Path(stored_video_path(video_path))
    if video_path.suffix.lower() == ".slp":  # a package: its embedded video, as sleap-io reads it
        return load_labels(video_path).videos[0]
    return sio.Video(filename=str(video_path), open_backend=video_path.exists())


@attrs.define
class PredictedFrames:
    """A predictions file as arrays: what :func:`write_predictions` took, given back."""

    video_paths: list[str]
    node_names: list[str]
    class_names: list[str]
    frames: list[tuple[int, int, Poses]]  # (video index, frame index, poses)


def read_predictions(path: str | Path) -> PredictedFrames:
    """Read a predictions .slp back into ``Poses`` per frame.

    The identity is the index of the instance's track among the file's tracks (-1 for
    none). A .slp stores only the assigned class's probability (``tracking_score``), so
    ``identity_scores`` holds that value in the assigned class's column and NaN in the
    others.
    """
    labels = load_labels(path, open_videos=False)
    if not labels.skeletons:
        raise RtposeError(f"{path}: the file has no skeleton")
    names = [n.name for n in labels.skeletons[0].nodes]
    classes = [t.name for t in labels.tracks]
    track_index = {id(t): i for i, t in enumerate(labels.tracks)}
    video_index = {id(v): i for i, v in enumerate(labels.videos)}
    frames = []
    for lf in labels.labeled_frames:
        instances = lf.predicted_instances
        poses = Poses.empty(len(names), len(classes))
        if instances:
            identity = np.array([track_index.get(id(i.track), -1) for i in instances], np.int32)
            id_scores = np.full((len(instances), len(classes)), np.nan, np.float32)
            for row, cls in enumerate(identity):
                if cls >= 0:
                    id_scores[row, cls] = np.float32(instances[row].tracking_score)
            with_scores = np.stack([i.numpy(scores=True) for i in instances]).astype(np.float32)  # (n, nodes, 3)
            poses = Poses(
                points=np.ascontiguousarray(with_scores[..., :2]),
                point_scores=np.ascontiguousarray(with_scores[..., 2]),
                instance_scores=np.array([i.score for i in instances], np.float32),
                identity=identity,
                identity_scores=id_scores,
            )
        frames.append((video_index.get(id(lf.video), -1), int(lf.frame_idx), poses))
    return PredictedFrames(
        video_paths=[str(v.filename) for v in labels.videos], node_names=names, class_names=classes, frames=frames
    )
