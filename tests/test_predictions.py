"""The predictions writer: what it writes opens in sleap-io as SLEAP predictions and reads back unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from rtpose.data.labels import class_names, load_labels, node_names
from rtpose.data.predictions import read_predictions, write_predictions
from rtpose.errors import RtposeError
from rtpose.poses import Poses

CLASSES = ["female", "male"]


def _poses(points, point_scores, instance_scores, identity, n_classes=2) -> Poses:
    identity = np.asarray(identity, np.int32)
    id_scores = np.full((len(identity), n_classes), 0.25, np.float32)
    for row, cls in enumerate(identity):
        if cls >= 0:
            id_scores[row, cls] = 0.75
    return Poses(np.asarray(points, np.float32), np.asarray(point_scores, np.float32),
                 np.asarray(instance_scores, np.float32), identity, id_scores)


@pytest.fixture(scope="module")
def flies(flies_labels_path):
    labels = load_labels(flies_labels_path, open_videos=False)
    skeleton = labels.skeletons[0]
    edges = [(e.source.name, e.destination.name) for e in skeleton.edges]
    return labels, node_names(labels), edges, class_names(labels)


def test_round_trip_of_fly_labels_as_predictions(tmp_path, flies, flies_video_path):
    labels, nodes, edges, classes = flies
    rng = np.random.default_rng(1)
    written = []
    for lf in labels.labeled_frames[:40]:
        pts = np.stack([i.numpy() for i in lf.user_instances]).astype(np.float32)
        identity = [classes.index(i.track.name) for i in lf.user_instances]
        scores = rng.uniform(size=pts.shape[:2]), rng.uniform(size=len(pts))
        written.append((lf.frame_idx, _poses(pts, *scores, identity)))
    written.append((1300, Poses.empty(len(nodes), len(classes))))  # searched, found nothing
    path = write_predictions(tmp_path / "pred.slp", flies_video_path, nodes, edges, classes, written)

    opened = sio.load_slp(str(path), open_videos=False)
    assert [t.name for t in opened.tracks] == classes
    assert [n.name for n in opened.skeletons[0].nodes] == nodes
    assert {(e.source.name, e.destination.name) for e in opened.skeletons[0].edges} == set(edges)
    assert opened.videos[0].filename == os.path.abspath(flies_video_path)
    assert len(opened.labeled_frames) == len(written)
    assert opened.labeled_frames[-1].frame_idx == 1300 and not opened.labeled_frames[-1].instances
    first = opened.labeled_frames[0].instances[0]
    assert isinstance(first, sio.PredictedInstance)
    assert first.score == pytest.approx(float(written[0][1].instance_scores[0]))
    assert first.track.name == classes[written[0][1].identity[0]]

    back = read_predictions(path)
    assert back.class_names == classes and back.node_names == nodes
    assert [f for _, f, _ in back.frames] == [f for f, _ in written]
    for (_, _, got), (_, sent) in zip(back.frames, written):
        np.testing.assert_array_equal(got.points, sent.points)  # NaN where invisible, both sides
        np.testing.assert_allclose(got.point_scores, sent.point_scores)
        np.testing.assert_allclose(got.instance_scores, sent.instance_scores)
        np.testing.assert_array_equal(got.identity, sent.identity)


def test_the_video_path_is_stored_absolute_without_dot_dot(tmp_path, flies_video_path, monkeypatch):
    """`rtpose predict -i $PWD/../shared/...` (the README's RTPOSE_DATA) stores the video as
    an absolute path without `..`; a relative path is made absolute; a symlink stays a link."""
    from rtpose.cli import main as cli

    model = Path(__file__).parents[1] / "models" / "flies13"
    given = flies_video_path.parent / ".." / flies_video_path.parent.name / flies_video_path.name
    assert ".." in str(given)
    assert cli(["predict", "-m", str(model), "-i", str(given), "--frames", "0-1", "-o", str(tmp_path / "p.slp")]) == 0
    stored = sio.load_slp(str(tmp_path / "p.slp"), open_videos=False).videos[0].filename
    assert stored == os.path.normpath(os.path.abspath(flies_video_path)) and ".." not in stored

    link = tmp_path / "clip_link.mp4"
    link.symlink_to(flies_video_path)
    monkeypatch.chdir(tmp_path)
    poses = _poses([[[1, 2], [3, 4]]], [[1, 1]], [1], [0])
    for relative, expected in (("clip_link.mp4", str(link)), ("./sub/../clip_link.mp4", str(link)),
                               ("cam0", "cam0")):  # a camera's name is no path: kept as it is
        path = write_predictions(tmp_path / "q.slp", relative, ["a", "b"], [(0, 1)], CLASSES, [(0, poses)])
        assert sio.load_slp(str(path), open_videos=False).videos[0].filename == expected, relative


def test_clean_path_folds_dot_dot_keeps_links_and_never_names_another_place(tmp_path, monkeypatch):
    """`..` folded to an absolute path; a link kept by name; a `..` after a link goes where
    the kernel goes (the link's target's parent), not where the folded text would."""
    from rtpose.paths import clean_path

    real = tmp_path / "disk" / "data"
    (real / "flies").mkdir(parents=True)
    (tmp_path / "disk" / "peer").mkdir()
    (tmp_path / "peer").mkdir()  # where folding `data_link/../peer` as text would land: another folder
    link = tmp_path / "data_link"
    link.symlink_to(real)
    assert clean_path(f"{real}/../data/flies") == str(real / "flies")
    assert clean_path(f"{link}/flies/../flies") == str(link / "flies")  # the link stays
    assert clean_path(f"{link}/../peer") == str(tmp_path / "disk" / "peer")  # as `ls data_link/../peer` lists
    assert clean_path(f"{tmp_path}/nowhere/../new.slp") == str(tmp_path / "new.slp")  # not there yet: as text
    monkeypatch.chdir(real)
    assert clean_path("flies/../flies") == str(real / "flies") and clean_path("x.slp") == str(real / "x.slp")


def test_invisible_nodes_and_untracked_instances(tmp_path):
    points = [[[10, 20], [np.nan, np.nan]], [[30, 40], [50, 60]]]
    poses = _poses(points, [[0.9, 0.1], [0.8, 0.7]], [0.95, 0.4], [1, -1])
    path = write_predictions(tmp_path / "p.slp", tmp_path / "absent.mp4", ["a", "b"], [(0, 1)], CLASSES, [(7, poses)])

    inst = sio.load_slp(str(path), open_videos=False).labeled_frames[0].instances
    assert inst[0].track.name == "male" and inst[1].track is None
    assert inst[0].points["visible"].tolist() == [True, False]
    assert inst[0].tracking_score == pytest.approx(0.75)  # probability of the assigned class

    (_, frame_idx, got), = read_predictions(path).frames
    assert frame_idx == 7
    np.testing.assert_array_equal(got.identity, [1, -1])
    assert np.isnan(got.points[0, 1]).all() and not np.isnan(got.points[0, 0]).any()
    assert got.identity_scores[0, 1] == pytest.approx(0.75) and np.isnan(got.identity_scores[1]).all()


def test_writer_refuses_a_skeleton_mismatch_and_a_non_slp_path(tmp_path):
    poses = _poses([[[1, 2], [3, 4]]], [[1, 1]], [1], [0])
    with pytest.raises(RtposeError, match="frame 3 has points of shape"):
        write_predictions(tmp_path / "p.slp", "v.mp4", ["a", "b", "c"], [(0, 1)], CLASSES, [(3, poses)])
    with pytest.raises(RtposeError, match="out.h5"):
        write_predictions(tmp_path / "out.h5", "v.mp4", ["a", "b"], [(0, 1)], CLASSES, [(3, poses)])
    with pytest.raises(RtposeError, match="unknown nodes: z"):
        write_predictions(tmp_path / "p.slp", "v.mp4", ["a", "b"], [("a", "z")], CLASSES, [(3, poses)])
