"""Inter-animal distance bins (rtpose.data.proximity) and the figures split by them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from rtpose.cli import main as cli_main
from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.data.predictions import write_predictions
from rtpose.data.proximity import PROXIMITY_BINS, animal_size, median_size, nearest_other, proximity_bin
from rtpose.eval.evaluate import evaluate
from rtpose.export.spec import ExportSpec
from rtpose.poses import Poses

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "flies13"


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
    assert r["proximity"]["anchor_part"] == "thorax" and r["proximity"]["animal_size_px"] == size
    assert r["proximity"]["bins"] == {name: lower for name, lower in PROXIMITY_BINS}
    assert r["proximity"]["anchor_part_from"] == r["proximity"]["animal_size_from"] == "given"
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


def test_eval_splits_as_the_model_recorded_and_says_so(tmp_path, flies_close_labels_path, capsys):
    """Predictions of the shipped fly model are split by its anchor part and its training
    labels' size unit (its training report's), read from the predictions' provenance,
    not by the box centre and the scored labels' median; the flags still win."""
    spec = ExportSpec.load(SHIPPED)
    assert spec.anchor_part == "thorax" and spec.animal_size_px and spec.animal_size_px > 0
    pred = tmp_path / "close.slp"
    assert cli_main(["predict", "-m", str(SHIPPED), "-i", str(flies_close_labels_path), "--only-labeled",
                     "--frames", "1290-1299", "-o", str(pred)]) == 0
    provenance = sio.load_slp(str(pred), open_videos=False).provenance["rtpose.distance_split"]
    assert provenance == {"anchor_part": "thorax", "animal_size_px": spec.animal_size_px}
    capsys.readouterr()
    assert cli_main(["eval", "-g", str(flies_close_labels_path), "-p", str(pred), "--json",
                     str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    prox = json.loads((tmp_path / "e.json").read_text())["proximity"]
    assert prox["anchor_part"] == "thorax" and prox["animal_size_px"] == spec.animal_size_px
    assert "close.slp's provenance" in prox["anchor_part_from"] == prox["animal_size_from"]
    assert f"distance split: anchor part thorax, animal size {spec.animal_size_px:.1f} px (both from close.slp's " \
           "provenance" in out
    assert f"touching <{1.15 * spec.animal_size_px:.0f}px" in out
    # the flags win, each on its own
    r = evaluate(flies_close_labels_path, pred, animal_size_px=100.0)
    assert r["proximity"]["animal_size_px"] == 100.0 and r["proximity"]["animal_size_from"] == "given"
    assert r["proximity"]["anchor_part"] == "thorax" and "provenance" in r["proximity"]["anchor_part_from"]
    r = evaluate(flies_close_labels_path, pred, anchor_part="head")
    assert r["proximity"]["anchor_part"] == "head" and r["proximity"]["animal_size_px"] == spec.animal_size_px


def test_eval_reads_the_split_from_the_model_an_older_predictions_file_names(tmp_path, flies_close_labels_path,
                                                                            flies_video_path):
    """A predictions file from before ``rtpose.distance_split`` names its export
    (``rtpose.model``): its rtpose.json gives the split; a file that names none gets the
    defaults."""
    labels = load_labels(flies_close_labels_path, open_videos=False)
    nodes, classes = node_names(labels), class_names(labels)
    frames = [(f.frame_idx, Poses(f.points, np.ones(f.points.shape[:2], np.float32), np.ones(len(f.points), np.float32),
                                  f.classes, np.eye(len(classes), dtype=np.float32)[f.classes]))
              for f in user_frames(labels, flies_close_labels_path)[:20]]
    old = write_predictions(tmp_path / "old.slp", flies_video_path, nodes, [], classes, frames,
                            provenance={"rtpose.model": str(SHIPPED)})
    prox = evaluate(flies_close_labels_path, old)["proximity"]
    assert prox["anchor_part"] == "thorax" and prox["animal_size_px"] == ExportSpec.load(SHIPPED).animal_size_px
    assert str(SHIPPED / "rtpose.json") in prox["anchor_part_from"]
    plain = write_predictions(tmp_path / "plain.slp", flies_video_path, nodes, [], classes, frames)
    prox = evaluate(flies_close_labels_path, plain)["proximity"]
    assert prox["anchor_part"] is None and prox["anchor_part_from"].startswith("default")
