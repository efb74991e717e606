"""Inter-animal distance bins (rtpose.data.proximity) and the figures split by them."""

from __future__ import annotations

import numpy as np
import pytest

from rtpose.cli import main as cli_main
from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.data.predictions import write_predictions
from rtpose.data.proximity import PROXIMITY_BINS, animal_size, median_size, nearest_other, proximity_bin
from rtpose.eval.evaluate import evaluate
from rtpose.poses import Poses


def test_size_is_sqrt_of_the_visible_box_area():
    pts = np.array([[0.0, 0.0], [40.0, 10.0], [np.nan, np.nan], [10.0, 5.0]])
    assert animal_size(pts) == pytest.approx(20.0)  # 40 x 10 box
    assert np.isnan(animal_size(np.array([[1.0, 1.0], [np.nan, np.nan]])))


def test_nearest_other_anchor_on_the_close_labels(flies_close_labels_path):
    labels = load_labels(flies_close_labels_path, open_videos=False)
    thorax = node_names(labels).index("thorax")
    for f in user_frames(labels, flies_close_labels_path)[::10]:
        d = nearest_other(f.points, thorax)
        by_hand = np.linalg.norm(f.points[0, thorax] - f.points[1, thorax])
        assert d == pytest.approx([by_hand, by_hand])
    one = user_frames(labels, flies_close_labels_path)[0].points[:1]
    assert nearest_other(one, thorax).tolist() == [np.inf]


def test_bins_by_animal_sizes():
    size = 100.0
    lower = dict(PROXIMITY_BINS)
    d = np.array([0.0, lower["near"] * size - 1, lower["near"] * size, lower["apart"] * size - 1,
                  lower["apart"] * size, np.inf])
    assert proximity_bin(d, size).tolist() == ["touching", "touching", "near", "near", "apart", "apart"]


def _perturbed_predictions(path, gt_path, video, move_px: float, touching_below: float):
    """The labels of ``gt_path`` as predictions, with every node of instances whose
    nearest other thorax is under ``touching_below`` px moved by ``move_px``."""
    labels = load_labels(gt_path, open_videos=False)
    nodes, classes = node_names(labels), class_names(labels)
    thorax = nodes.index("thorax")
    out = []
    for f in user_frames(labels, gt_path):
        pts = f.points.copy()
        close = nearest_other(pts, thorax) < touching_below
        pts[close] += move_px
        n = len(pts)
        out.append((f.frame_idx, Poses(pts, np.ones(pts.shape[:2], np.float32), np.ones(n, np.float32), f.classes,
                                       np.eye(len(classes), dtype=np.float32)[f.classes])))
    return write_predictions(path, video, nodes, [], classes, out)


def test_figures_split_by_distance_show_where_the_errors_are(tmp_path, flies_close_labels_path, flies_video_path):
    size = 90.0
    touching_below = dict(PROXIMITY_BINS)["near"] * size
    pred = _perturbed_predictions(tmp_path / "p.slp", flies_close_labels_path, flies_video_path, 6.0, touching_below)
    r = evaluate(flies_close_labels_path, pred, anchor_part="thorax", animal_size_px=size)
    split = r["by_proximity"]
    assert sum(b["n_gt"] for b in split.values()) == r["n_gt"] == 200
    assert split["touching"]["n_gt"] > 0 and split["near"]["n_gt"] > 0
    assert split["near"]["map"] == 1.0 and split["near"]["dist_px"]["p95"] == 0.0
    assert split["touching"]["map"] < 0.9
    assert split["touching"]["dist_px"]["p50"] == pytest.approx(6.0 * np.sqrt(2), abs=1e-4)
    assert r["proximity"] == {"anchor_part": "thorax", "animal_size_px": size,
                              "bins": {name: lower for name, lower in PROXIMITY_BINS}}
    # found = matched with OKS > 0.5, counted per bin too
    assert r["n_found"] == sum(b["n_found"] for b in split.values())


def test_default_unit_is_the_median_size_of_the_scored_labels(flies_close_labels_path):
    r = evaluate(flies_close_labels_path, flies_close_labels_path)
    labels = load_labels(flies_close_labels_path, open_videos=False)
    sizes = [p for f in user_frames(labels, flies_close_labels_path) for p in f.points]
    assert r["proximity"]["animal_size_px"] == pytest.approx(median_size(sizes))
    assert r["proximity"]["anchor_part"] is None
    assert r["found"] == 1.0 and all(b["found"] == 1.0 for b in r["by_proximity"].values() if b["n_gt"])


def test_cli_prints_the_split_and_refuses_an_unknown_anchor(flies_close_labels_path, capsys):
    assert cli_main(["eval", "-g", str(flies_close_labels_path), "-p", str(flies_close_labels_path),
                     "--anchor-part", "thorax"]) == 0
    out = capsys.readouterr().out
    assert "touching" in out and "near" in out and "apart" in out and "instances found" in out
    assert cli_main(["eval", "-g", str(flies_close_labels_path), "-p", str(flies_close_labels_path),
                     "--anchor-part", "tail"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'tail'" in err[0] and "thorax" in err[0]
