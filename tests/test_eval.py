"""``rtpose eval`` on the real fly labels, with predictions whose errors we know.

Predictions are the labels themselves, written with rtpose's writer after a known
change (Gaussian jitter, swapped names, dropped frames), so every figure has an
expected value. Most cases use a few hundred frames to stay fast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import sleap_io as sio
import pytest

from rtpose.cli import main as cli_main
from rtpose.data.labels import class_names, load_labels, node_names
from rtpose.data.predictions import write_predictions
from rtpose.eval import metrics
from rtpose.errors import RtposeError
from rtpose.data.video import describe_indices, describe_span
from rtpose.eval.evaluate import evaluate
from rtpose.eval.oks import greedy_match, similarity
from rtpose.poses import Poses

FRAMES = range(0, 300)  # a contiguous stretch of labeled frames


@pytest.fixture(scope="module")
def flies(flies_labels_path):
    """(truth, nodes, classes): truth maps frame -> (points, class index per instance)."""
    labels = load_labels(flies_labels_path, open_videos=False)
    classes = class_names(labels)
    truth = {
        int(lf.frame_idx): (np.stack([i.numpy() for i in lf.user_instances]).astype(np.float32),
                            np.array([classes.index(i.track.name) for i in lf.user_instances], np.int32))
        for lf in labels.labeled_frames
    }
    return truth, node_names(labels), classes


def write_from_truth(path, flies, video, frames, change=None):
    """Write the labels of ``frames`` as predictions, after ``change(frame, points, identity)``."""
    truth, nodes, classes = flies
    out = []
    for f in frames:
        pts, ident = truth[f][0].copy(), truth[f][1].copy()
        if change is not None:
            pts, ident = change(f, pts, ident)
        n = len(pts)
        scores = np.ones((n, len(classes)), np.float32)
        out.append((f, Poses(pts, np.ones(pts.shape[:2], np.float32), np.linspace(1.0, 0.9, n, dtype=np.float32),
                             ident, scores)))
    return write_predictions(path, video, nodes, [], classes, out)


# ---------------------------------------------------------------- the procedure, by hand


def test_oks_of_one_displaced_node_matches_the_formula():
    gt = np.array([[[[0.0, 0.0], [10.0, 20.0], [np.nan, np.nan]]]])  # bbox area 200, one node unlabeled
    pred = np.array([[[[1.0, 0.0], [10.0, 20.0], [5.0, 5.0]]]])
    expected = (math.exp(-1.0 / ((2 * 0.025) ** 2 * 2 * 200)) + 1.0) / 2  # unlabeled node left out
    assert similarity(gt, pred)[0, 0, 0] == pytest.approx(expected, rel=1e-12)
    pred_missing = pred.copy()
    pred_missing[0, 0, 1] = np.nan  # a labeled node the prediction lacks scores 0
    assert similarity(gt, pred_missing)[0, 0, 0] == pytest.approx(math.exp(-1.0 / 1.0) / 2, rel=1e-12)


def test_greedy_matching_goes_by_instance_score():
    oks = np.array([[[0.9, 0.8], [0.0, 0.3]]])  # (frame, gt, pred)
    present = np.ones((1, 2), bool)
    m = greedy_match(oks, present, present, pred_scores=np.array([[0.2, 0.7]]))
    # prediction 1 (score 0.7) claims gt 0 first; prediction 0 gets nothing (OKS 0 with gt 1)
    assert (m.gt.tolist(), m.pred.tolist(), m.oks.tolist()) == ([0], [1], [0.8])


def test_voc_average_precision_by_hand():
    ap, ar = metrics.voc(np.array([0.4, 0.9, 0.6]), np.array([0.7, 0.9, 0.8]), n_gt=4)
    # at OKS 0.5 the ranked detections are TP, TP, FP: recall .25, .5, .5 with precision 1
    assert ap[0] == pytest.approx(51 / 101) and ar[0] == 0.5
    assert ap[-1] == 0 and ar[-1] == 0  # nothing reaches OKS 0.95


def test_switches_per_animal_and_events_with_runs_and_misses():
    #  frames 0-5 one run; the fly's name flips at 2, a miss at 3, back at 4; gap; frame 9 named wrong
    frame = np.array([0, 1, 2, 3, 4, 5, 9])
    assigned = np.array(["f", "f", "m", None, "f", "f", "m"], dtype=object)
    gt = np.array(["f"] * 7, dtype=object)
    assert metrics.identity_switches(np.zeros(7, int), frame, gt, assigned) == (2, 2)


# ---------------------------------------------------------------- on the fly labels


def test_ground_truth_against_itself_is_perfect(flies_labels_path):
    r = evaluate(flies_labels_path, flies_labels_path)
    assert r["n_gt"] == r["n_pred"] == r["n_matched"] == 2400
    assert r["map"] == 1.0 and r["mar"] == 1.0 and r["moks"] == 1.0
    assert all(v == 0.0 for v in r["dist_px"].values())
    assert r["pck"] == 1.0 and r["id_accuracy"] == 1.0 and r["id_switches"] == 0


def test_gaussian_jitter_gives_rayleigh_error_percentiles(tmp_path, flies, flies_labels_path, flies_video_path):
    sigma = 2.0
    rng = np.random.default_rng(7)
    path = write_from_truth(tmp_path / "jitter.slp", flies, flies_video_path, FRAMES,
                            lambda f, p, i: (p + rng.normal(scale=sigma, size=p.shape).astype(np.float32), i))
    r = evaluate(flies_labels_path, path, frames=FRAMES, px_per_mm=30.3)

    def rayleigh(q: float) -> float:  # error (px) below which a share q of nodes lies
        return sigma * math.sqrt(-2 * math.log(1 - q))

    assert r["n_matched"] == r["n_gt"] == 600
    assert r["dist_px"]["p50"] == pytest.approx(rayleigh(0.50), rel=0.03)  # sigma * sqrt(2 ln 2)
    assert r["dist_px"]["p90"] == pytest.approx(rayleigh(0.90), rel=0.03)
    assert r["dist_px"]["p95"] == pytest.approx(rayleigh(0.95), rel=0.04)
    assert r["dist_px"]["mean"] == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.03)
    assert r["dist_mm"]["p50"] == pytest.approx(r["dist_px"]["p50"] / 30.3)
    assert r["pck"] == pytest.approx(1 - math.exp(-(5.0**2) / (2 * sigma**2)), abs=0.01)
    assert 0.2 < r["map"] < 0.9 and r["id_accuracy"] == 1.0


def test_swapped_identities_over_a_stretch(tmp_path, flies, flies_labels_path, flies_video_path):
    def swap(f, p, ident):
        return p, (ident[::-1].copy() if 100 <= f < 150 else ident)

    path = write_from_truth(tmp_path / "swap.slp", flies, flies_video_path, FRAMES, swap)
    r = evaluate(flies_labels_path, path, frames=FRAMES)
    assert r["map"] == 1.0  # poses are exact; only names are wrong
    assert r["id_switches"] == 4  # each fly: wrong name at 100, its own back at 150
    assert r["id_switch_events"] == 2
    assert r["id_accuracy"] == pytest.approx(1 - 100 / 600)


def test_identity_of_found_instances_leaves_out_pairs_far_off(tmp_path, flies, flies_labels_path, flies_video_path,
                                                             capsys, monkeypatch):
    """Poses 40 px off in frames 0-49 are still matched (greedy, no OKS floor) but not
    found: identity over matched pairs counts them, identity over found instances not."""
    def change(f, p, ident):
        return (p + 40.0 if f < 50 else p), (ident[::-1].copy() if f < 50 else ident)

    path = write_from_truth(tmp_path / "off.slp", flies, flies_video_path, range(0, 100), change)
    r = evaluate(flies_labels_path, path, frames=range(0, 100))
    assert r["n_matched"] == 200 and r["n_found"] == 100
    assert r["n_id_found"] == 100 and r["id_accuracy_found"] == 1.0
    assert r["id_accuracy"] < 1.0  # the swapped names of the far-off pairs
    monkeypatch.setenv("COLUMNS", "200")  # the table's rows unwrapped
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-49"]) == 0
    out = capsys.readouterr().out
    assert "found instances (0)" in out and "instances found (OKS > 0.5)" in out


def test_nodes_left_out_by_the_prediction_are_counted(tmp_path, flies, flies_labels_path, flies_video_path, capsys,
                                                      monkeypatch):
    """A model that predicts only 3 of 13 nodes, exactly: the errors (over the nodes both
    have) are 0, and the table says that 10 of every 13 labelled nodes were not predicted."""
    def keep_three(f, p, ident):
        p = p.copy()
        p[:, 3:] = np.nan
        return p, ident

    path = write_from_truth(tmp_path / "three.slp", flies, flies_video_path, range(0, 20), keep_three)
    r = evaluate(flies_labels_path, path, frames=range(0, 20))
    labelled = sum(int((~np.isnan(flies[0][f][0]).any(-1)).sum()) for f in range(20))
    kept = sum(int((~np.isnan(flies[0][f][0][:, :3]).any(-1)).sum()) for f in range(20))
    assert r["n_nodes_labelled"] == labelled and r["n_nodes_not_predicted"] == labelled - kept > 0
    assert r["dist_px"]["p95"] == 0.0
    monkeypatch.setenv("COLUMNS", "200")  # the table's rows unwrapped
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-19"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    row = "labeled nodes not predicted (matched pairs; errors are over the rest)"
    assert f"{row} │ {labelled - kept} / {labelled}" in out


def test_frames_in_only_one_file_are_left_out_or_missed(tmp_path, flies, flies_labels_path, flies_video_path):
    path = write_from_truth(tmp_path / "part.slp", flies, flies_video_path, range(0, 100))
    r = evaluate(flies_labels_path, path, frames=FRAMES)  # default: as sleap-nn, unpredicted frames left out
    assert (r["n_gt"], r["n_matched"], r["n_frames_gt_only"], r["n_gt_unscored"]) == (200, 200, 200, 400)
    assert r["map"] == 1.0 and len(r["warnings"]) == 1
    r = evaluate(flies_labels_path, path, frames=FRAMES, unpredicted="missed")
    assert (r["n_gt"], r["n_matched"], r["n_frames_gt_only"], r["n_gt_unscored"]) == (600, 200, 200, 0)
    assert r["mar"] == pytest.approx(200 / 600) and r["map"] == pytest.approx(34 / 101)  # recall stops at 0.33

    truth, nodes, classes = flies
    extra = [(f, Poses(truth[0][0], np.ones((2, len(nodes)), np.float32), np.ones(2, np.float32),
                       truth[0][1], np.ones((2, 2), np.float32))) for f in (0, 1300, 1301)]
    path = write_predictions(tmp_path / "unlabeled.slp", flies_video_path, nodes, [], classes, extra)
    r = evaluate(flies_labels_path, path, frames=range(0, 10))
    assert r["n_frames_pred_only"] == 0  # outside --frames, not counted at all
    r = evaluate(flies_labels_path, path)
    assert (r["n_frames_pred_only"], r["n_pred_unscored"], r["n_pred"], r["n_frames"]) == (2, 4, 2, 1)


@pytest.mark.parametrize("unpredicted", ["skip", "missed"])
@pytest.mark.parametrize("frames", [[], [5]], ids=["no frames", "one empty frame"])
def test_empty_predictions_score_zero(tmp_path, flies, flies_labels_path, flies_video_path, frames, unpredicted):
    truth, nodes, classes = flies
    frames = [(f, Poses.empty(len(nodes), len(classes))) for f in frames]
    path = write_predictions(tmp_path / "empty.slp", flies_video_path, nodes, [], classes, frames)
    if not frames and unpredicted == "skip":  # no frame pairs: nothing to score is an error, not a 0
        with pytest.raises(RtposeError, match="nothing to score"):
            evaluate(flies_labels_path, path, frames=FRAMES, unpredicted=unpredicted)
        return
    r = evaluate(flies_labels_path, path, frames=FRAMES, unpredicted=unpredicted)
    assert (r["map"], r["mar"], r["n_matched"], r["n_pred"]) == (0.0, 0.0, 0, 0)
    assert r["n_gt"] == (600 if unpredicted == "missed" else 2 * len(frames))
    assert math.isnan(r["moks"]) and math.isnan(r["dist_px"]["p50"]) and r["id_switches"] == 0


# ---------------------------------------------------------------- the command


def test_cli_writes_every_key(tmp_path, flies, flies_labels_path, flies_video_path, capsys):
    path = write_from_truth(tmp_path / "p.slp", flies, flies_video_path, range(0, 50))
    out = tmp_path / "metrics.json"
    status = cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-49",
                       "--px-per-mm", "30.3", "--json", str(out)])
    assert status == 0
    assert "OKS mAP" in capsys.readouterr().out
    r = json.loads(out.read_text())
    for key in ("map", "mar", "moks", "id_accuracy", "id_switches", "id_switch_events", "n_gt", "n_pred",
                "n_matched", "pck", "ap", "ar"):
        assert key in r, key
    for q in ("p50", "p75", "p90", "p95", "p99"):
        assert r["dist_px"][q] == 0.0 and r["dist_mm"][q] == 0.0
    assert (r["map"], r["n_gt"], r["n_matched"]) == (1.0, 100, 100)


def test_cli_empty_predictions_json_has_nulls_not_nan(tmp_path, flies, flies_labels_path, flies_video_path):
    truth, nodes, classes = flies
    path = write_predictions(tmp_path / "empty.slp", flies_video_path, nodes, [], classes, [])
    out = tmp_path / "m.json"
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-9", "--json", str(out),
                     "--unpredicted-frames", "missed"]) == 0
    r = json.loads(out.read_text())  # strict JSON: NaN would not parse in most readers
    assert r["map"] == 0.0 and r["moks"] is None and r["dist_px"]["p50"] is None and r["n_gt"] == 20


def test_frames_that_one_file_lacks_are_blamed_on_that_file_not_the_videos(tmp_path, flies, flies_labels_path,
                                                                            flies_video_path, capsys):
    """--frames outside the predictions, or outside the labels, names that file and the
    frames it holds (the videos pair: they are not the problem); one line, exit 2."""
    truth, nodes, classes = flies
    labeled = f"{min(truth)}-{max(truth)} ({len(truth)} frames)"
    path = write_from_truth(tmp_path / "p.slp", flies, flies_video_path, range(0, 10))
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "100-109"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: no predicted frame in frames 100-109 (it holds frames 0-9 (10 frames); "
                   f"{flies_labels_path} holds labeled frames {labeled}): nothing to score\n")
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "1300-1310"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {flies_labels_path}: no user-labeled instances in frames 1300-1310 to score against "
                   f"(it holds labeled frames {labeled})\n")
    # frames of the held-back stretch only: both files' frames said, no --frames needed
    beyond = write_predictions(tmp_path / "beyond.slp", flies_video_path, nodes, [], classes,
                               [(1300, Poses(truth[0][0], np.ones(truth[0][0].shape[:2], np.float32),
                                             np.ones(len(truth[0][0]), np.float32), truth[0][1],
                                             np.ones((len(truth[0][0]), len(classes)), np.float32)))])
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(beyond)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: no labeled frame of {flies_labels_path} (labeled frames {labeled}) has a frame in "
                   f"{beyond} (frames 1300 (1 frame)): nothing to score\n")


def test_predictions_given_as_ground_truth_suggest_the_swap(tmp_path, flies, flies_labels_path, flies_video_path,
                                                            capsys):
    path = write_from_truth(tmp_path / "p.slp", flies, flies_video_path, range(0, 10))
    assert cli_main(["eval", "-g", str(path), "-p", str(flies_labels_path)]) == 2
    assert capsys.readouterr().err == (f"error: {path}: no user-labeled instances to score against ({path} holds "
                                       f"predicted instances and {flies_labels_path} user-labeled ones: are -g and "
                                       "-p swapped?)\n")
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-9"]) == 0


@pytest.mark.parametrize("bad", ["video", "missing"])
def test_cli_names_a_file_that_is_not_slp(flies_labels_path, flies_video_path, tmp_path, capsys, bad):
    path = flies_video_path if bad == "video" else tmp_path / "nope.slp"
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(path) in err


def test_a_span_of_labeled_frames_says_the_frame_in_it_without_instances(mice_path, capsys):
    """mice2 labels frames 0-69, and frame 35 holds no instance: the span says so
    instead of "0-69 (69 frames)"."""
    labels = sio.load_slp(str(mice_path), open_videos=False)
    empty = [lf.frame_idx for lf in labels.labeled_frames if not lf.user_instances]
    held = [lf.frame_idx for lf in labels.labeled_frames if lf.user_instances]
    assert empty == [35] and (min(held), max(held), len(held)) == (0, 69, 69)
    assert cli_main(["eval", "-g", str(mice_path), "-p", str(mice_path), "--frames", "80-90"]) == 2
    assert capsys.readouterr().err == (f"error: {mice_path}: no user-labeled instances in frames 80-90 to score "
                                       "against (it holds labeled frames 0-69 (69 of 70 frames; 35 has no "
                                       "instances))\n")


def test_a_backwards_frame_range_is_said_as_predict_says_it(flies_labels_path, capsys):
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(flies_labels_path), "--frames", "1199-1150"]) == 2
    assert capsys.readouterr().err == ("error: --frames: frame range '1199-1150' runs backwards: write the first frame "
                                       "first (1150-1199)\n")


def test_spans_and_lists_of_frames_say_their_gaps_and_stay_short():
    assert describe_span(range(1200, 1300)) == "1200-1299 (100 frames)"
    assert describe_span([0, 1, 2, 5, 6, 9], empty=[3, 4]) == "0-9 (6 of 10 frames; 3, 4 have no instances, 7, 8 " \
                                                             "not in the file)"
    assert describe_span(range(0, 1200, 10), absent="not labeled") == "0-1190 (120 of 1191 frames; 1071 between " \
                                                                     "not labeled)"
    assert describe_indices([i for i in range(70) if i != 35]) == "0-34, 36-69"
    long = describe_indices(range(0, 4000, 10))
    assert long.endswith(", ... (400 frames in 0-3990)") and len(long) < 80


def test_an_existing_json_is_refused_before_scoring_unless_overwrite(tmp_path, flies, flies_labels_path,
                                                                       flies_video_path, capsys):
    """`eval --json` on an existing file: one line naming it, --json and --overwrite, exit 2, the file
    untouched and nothing scored (no table); with --overwrite it is replaced."""
    path = write_from_truth(tmp_path / "p.slp", flies, flies_video_path, range(0, 10))
    out = tmp_path / "metrics.json"
    out.write_bytes(b'{"an earlier": "score"}')
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-9",
                     "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {out} already exists: give another --json, or --overwrite to replace it\n"
    assert captured.out == "" and out.read_bytes() == b'{"an earlier": "score"}'
    assert cli_main(["eval", "-g", str(flies_labels_path), "-p", str(path), "--frames", "0-9",
                     "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["n_gt"] == 20
