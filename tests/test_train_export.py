"""The trainer, the exporter and the torch rebuild, end to end on real fly frames with
tiny networks (seconds, not minutes), and the trainer's answers to bad input."""

from __future__ import annotations

import csv
import shutil
import json
import re
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import torch
import yaml

from rtpose.cli import main as cli
from rtpose.data.video import VideoReader
from rtpose.engine.base import load_engine
from rtpose.engine.torch_cuda import pipeline_from_export
from rtpose.eval.evaluate import evaluate
from rtpose.engine.selfcheck import FP32_BOUNDS, load_references, run_check
from rtpose.export.spec import OUTPUT_NAMES, ExportSpec

TINY_UNET = {"filters": 8, "filters_rate": 2.0, "down_blocks": 2, "up_blocks": 2, "stem_stride": 2}
LEG_TIPS = ["forelegL4", "forelegR4", "midlegL4", "midlegR4", "hindlegL4", "hindlegR4"]


def tiny_config(labels: Path, out: Path, **changes) -> dict:
    cfg = {
        "data": {"labels": str(labels), "train_frames": "1100-1149:10", "val_frames": "1190-1199:5",
                 "anchor_part": "thorax"},
        "centroid": {"input_scale": 0.125, "sigma": 1.5, "unet": TINY_UNET,
                     "optim": {"lr": 1e-3, "batch_size": 2, "min_steps_per_epoch": 6, "max_epochs": 3}},
        "instance": {"crop_size": 144, "sigma": 2.5, "unet": TINY_UNET,
                     "optim": {"lr": 1e-3, "batch_size": 4, "min_steps_per_epoch": 4, "max_epochs": 3},
                     "distinct_nodes": {"nodes": LEG_TIPS}},
        "output": str(out),
        "precision": "fp32",
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def write_config(tmp_path: Path, cfg: dict, name: str = "train.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, flies_labels_path):
    tmp = tmp_path_factory.mktemp("train")
    cfg = write_config(tmp, tiny_config(flies_labels_path, tmp / "model"))
    assert cli(["train", str(cfg)]) == 0
    return tmp / "model", cfg


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model_dir, _ = trained
    out = tmp_path_factory.mktemp("export") / "export"
    assert cli(["export", str(model_dir), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def fly_frames(flies_video_path):
    with VideoReader(flies_video_path) as r:
        return [r.read(i) for i in (1150, 1250, 1400)]


def test_model_dir_has_everything_a_person_needs(trained):
    model_dir, _ = trained
    for name in ("config.yaml", "model.json"):
        assert (model_dir / name).exists()
    for net in ("centroid", "instance"):
        for name in ("best.pt", "last.pt", "training_log.csv", "loss.png"):
            assert (model_dir / net / name).exists(), f"{net}/{name}"
    info = json.loads((model_dir / "model.json").read_text())
    assert info["class_names"] == ["female", "male"] and info["crop_size"] == 144
    assert info["frame_height"] == 1024 and len(info["node_names"]) == 13
    # instance.distinct_nodes by index of the skeleton's nodes, as the pipeline takes them
    assert info["distinct_nodes"] == {"nodes": [5, 6, 7, 8, 9, 10], "names": LEG_TIPS, "min_distance_px": 3.0,
                                      "exclusion_px": 8.0}


def test_training_reduces_the_loss(trained):
    model_dir, _ = trained
    for net in ("centroid", "instance"):
        rows = list(csv.DictReader((model_dir / net / "training_log.csv").open()))
        assert len(rows) == 3
        first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
        assert np.isfinite(last) and last < 0.7 * first, (net, first, last)  # 12 steps: a clear drop, not a tuned one
        assert "val_dist_p50" in rows[-1]


def test_resume_continues_from_last_epoch(trained, tmp_path):
    model_dir, cfg = trained
    stopped = tmp_path / "stopped"  # a run stopped before it finished: its checkpoints, no model.json
    shutil.copytree(model_dir, stopped)
    (stopped / "model.json").unlink()
    assert cli(["train", str(cfg), "-o", str(stopped), "--resume", "--set", "centroid.optim.max_epochs=4",
                "--set", "instance.optim.max_epochs=4"]) == 0
    rows = list(csv.DictReader((stopped / "instance" / "training_log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]


def test_resume_keeps_a_finished_network_and_counts_its_minutes_in_the_run_budget(trained, tmp_path, capsys):
    """A run stopped during its instance net: on --resume the centroid net, which had
    ended on its time budget, is not trained on, and the instance net gets what the run's
    budget leaves after the centroid's minutes of the first session too (found by a
    new-user trial: an extra centroid epoch, and the instance given the whole budget)."""
    import torch

    model_dir, cfg = trained
    stopped = tmp_path / "stopped"
    shutil.copytree(model_dir, stopped)
    (stopped / "model.json").unlink()
    last = stopped / "centroid" / "last.pt"
    state = torch.load(last, weights_only=False)
    state["elapsed_s"] = 96.0  # 1.6 min: past a 1-minute centroid budget, as when that budget stopped it
    state["wall_s"] = 90.0  # the wall clock of the stopped session's centroid net
    torch.save(state, last)
    instance_last = stopped / "instance" / "last.pt"
    state = torch.load(instance_last, weights_only=False)
    state["wall_s"] = 30.0
    torch.save(state, instance_last)
    rows_before = (stopped / "centroid" / "training_log.csv").read_text()
    capsys.readouterr()
    assert cli(["train", str(cfg), "-o", str(stopped), "--resume", "--set", "centroid.optim.max_minutes=1",
                "--set", "centroid.optim.max_epochs=9", "--set", "instance.optim.max_epochs=4",
                "--set", "budget_minutes=2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(r"\[centroid\] had finished before the run was stopped \(time budget \(1 min( of CPU)?\)\): "
                     r"kept as it was", err), err
    assert (stopped / "centroid" / "training_log.csv").read_text() == rows_before
    left = re.search(r"\[instance\] ([\d.]+) min of the run's 2 min budget left", err)
    assert left and float(left[1]) <= 0.4, err  # 2 - 1.6 - this session's setup, not 2 - setup
    info = json.loads((stopped / "model.json").read_text())
    assert info["centroid"]["stopped"].startswith("time budget")
    # the minutes of the session before the stop count: model.json and the report say the run's time
    assert info["time"]["earlier_sessions"] == 2.0 and info["centroid"]["wall_minutes"] >= 1.5
    assert info["instance"]["wall_minutes"] >= 0.5 and info["wall_minutes"] >= 2.0 + info["time"]["training"]
    assert "(and 2.00 min before the resume)" in err, err


def test_resume_of_a_finished_run_is_refused_before_anything_is_touched(trained, capsys):
    """A finished run (model.json) has spent its budget: --resume says so in one line,
    with its epochs, and leaves config.yaml and the checkpoints as they were."""
    model_dir, cfg = trained
    kept = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    info = json.loads((model_dir / "model.json").read_text())
    assert cli(["train", str(cfg), "--resume", "--set", "budget_minutes=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{model_dir} holds a finished run" in err
    assert f"centroid {info['centroid']['epochs']} epochs, instance {info['instance']['epochs']} epochs" in err
    assert "another -o with a larger budget" in err and "--overwrite to start again" in err
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == kept


def test_a_config_run_stopped_by_its_time_budget_while_improving_says_so(tmp_path, flies_labels_path, capsys):
    cfg = tiny_config(flies_labels_path, tmp_path / "model", instance__optim__max_epochs=500,
                      instance__optim__max_minutes=0.005, instance__optim__budget_clock="wall")
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["instance"]["stopped"].startswith("time budget")  # 0.3 s: an epoch or two, so the best is among the last three
    err = capsys.readouterr().err
    # the report of a LABELS.slp run, its advice in the config's settings
    assert "training report" in err and (tmp_path / "model" / "report.json").exists()
    assert "warning: the time budget stopped the instance network" in err
    assert "(e.g. budget_minutes: 1, or that network's optim.max_minutes, and another -o)" in err
    assert "next: train longer, e.g. a larger budget_minutes in the config" in err and "--minutes" not in err
    assert "the centroid network" not in err  # it ran its 3 epochs


def test_export_writes_the_contract(exported, flies_video_path):
    spec = ExportSpec.load(exported)
    assert spec.max_instances == 2 and spec.class_names == ["female", "male"]
    assert (spec.frame_height, spec.frame_width) == (1024, 1024)
    assert set(spec.architecture) == {"centroid", "instance", "pipeline"}
    # what torch-cuda rebuilds the graph's peak finding from
    assert spec.architecture["pipeline"]["distinct_nodes"]["nodes"] == [5, 6, 7, 8, 9, 10]
    assert pipeline_from_export(exported).distinct_nodes == spec.architecture["pipeline"]["distinct_nodes"]
    assert spec.graphs == {"fp32": "model.onnx"} and spec.format_version == 2
    assert {p.name for p in exported.iterdir()} == {"model.onnx", "reference.npz", "rtpose.json"}
    # the references are real frames of the validation selection (1190-1199:5), kept
    # whole or near the animals only, and the fp32 graph's outputs on them
    refs = load_references(exported, spec)
    assert refs.frame_indices.tolist() == spec.extra["references"]["video_frames"] == [1190, 1195]
    with VideoReader(flies_video_path) as r:
        for index, stored in zip(refs.frame_indices, refs.frames):
            original = r.read(int(index))
            kept = stored == original
            assert kept.mean() > 0.2 and np.unique(stored[~kept]).size <= 1
    engine = load_engine(exported, "ort-cpu")
    for i, frame in enumerate(refs.frames):
        raw = engine.run_raw(frame[None, None])
        for name in OUTPUT_NAMES:
            assert np.allclose(raw[name][0], refs.outputs[name][i], atol=1e-3, equal_nan=True), name


def test_eval_of_the_export_splits_by_distance_as_the_training_report(trained, exported, flies_labels_path,
                                                                     tmp_path, capsys):
    """The training report's split (validation_report.json) and ``rtpose eval`` of the
    export's predictions on the same frames, without flags: same anchor part, same unit,
    same bins, same instances in each."""
    model_dir, _ = trained
    report = json.loads((model_dir / "validation_report.json").read_text())
    info = json.loads((model_dir / "model.json").read_text())
    assert ExportSpec.load(exported).animal_size_px == info["animal_size_px"]
    pred = tmp_path / "val.slp"
    assert cli(["predict", "-m", str(exported), "-i", str(flies_labels_path), "--only-labeled",
                "--frames", "1190-1195", "-o", str(pred)]) == 0
    assert cli(["eval", "-g", str(flies_labels_path), "-p", str(pred), "--frames", "1190-1195"]) == 0
    out = capsys.readouterr().out
    ours = evaluate(flies_labels_path, pred, frames=set(report["frames"]))  # the selection 1190-1199:5
    for key in ("anchor_part", "animal_size_px", "bins"):
        assert ours["proximity"][key] == report["proximity"][key], key
    assert report["proximity"]["anchor_part"] == "thorax" and "model.json" in report["proximity"]["animal_size_from"]
    assert {k: v["n_gt"] for k, v in ours["by_proximity"].items()} == \
        {k: v["n_gt"] for k, v in report["by_proximity"].items()}
    assert f"animal size {info['animal_size_px']:.1f} px (both from val.slp's provenance" in out


def test_export_into_an_earlier_export_is_refused_unless_overwrite(trained, exported, tmp_path, capsys):
    """An export directory (rtpose.json) is not replaced silently: one line naming it and
    the model it was exported from, nothing touched; --overwrite replaces it."""
    model_dir, _ = trained
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    kept = {p.name: p.read_bytes() for p in again.iterdir()}
    assert cli(["export", str(model_dir), "-o", str(again), "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {again} already holds an export (an export of {model_dir}): give another -o, " \
                  "or --overwrite to replace it"
    assert {p.name: p.read_bytes() for p in again.iterdir()} == kept
    assert cli(["export", str(model_dir), "-o", str(again), "--overwrite", "--max-instances", "3"]) == 0
    assert ExportSpec.load(again).max_instances == 3
    capsys.readouterr()
    mine = tmp_path / "mine"  # a user's folder of other files: the graphs would land among them
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert cli(["export", str(model_dir), "-o", str(mine)]) == 2
    assert capsys.readouterr().err == (f"error: -o {mine}: a folder holding other files (notes.txt); an export gets "
                                       "a folder of its own: give a new or empty one (--overwrite writes into it "
                                       "anyway)\n")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_onnx_graph_agrees_with_torch(trained, exported, fly_frames):
    """fp32 parity on real frames: <= 0.1 px and the same identities."""
    from rtpose.export.onnx_export import build_pipeline
    from rtpose.engine.base import raw_to_poses

    pipeline, _ = build_pipeline(trained[0], max_instances=2)
    engine = load_engine(exported, "ort-cpu")
    for frame in fly_frames:
        with torch.no_grad():
            expected = dict(zip(["points", "point_scores", "instance_scores", "class_probs", "valid"],
                                [t.numpy() for t in pipeline(torch.from_numpy(frame)[None, None])]))
        got = engine.run_raw(frame[None, None])
        assert np.array_equal(expected["valid"], got["valid"])
        assert np.abs(expected["points"] - got["points"]).max() <= 0.1
        ours, theirs = raw_to_poses(got, 0, engine.spec), raw_to_poses(expected, 0, engine.spec)
        assert np.array_equal(ours.identity, theirs.identity)


def test_torch_rebuild_from_onnx_matches_onnx_runtime(exported, fly_frames):
    """What the torch-cuda engine runs (weights reloaded from model.onnx), here on the CPU."""
    pipeline = pipeline_from_export(exported)
    engine = load_engine(exported, "ort-cpu")
    frame = fly_frames[1]
    with torch.no_grad():
        points = pipeline(torch.from_numpy(frame)[None, None])[0].numpy()
    assert np.abs(points - engine.run_raw(frame[None, None])["points"]).max() <= 0.1


def test_torch_rebuild_of_the_shipped_model_reproduces_its_references():
    """The self-check contract, on any CPU: torch's fp32 rebuild (what torch-cuda loads)
    reproduces the shipped export's fp32 references within the fp32 bounds."""
    shipped = Path(__file__).resolve().parent.parent / "models" / "flies13"
    spec = ExportSpec.load(shipped)
    pipeline = pipeline_from_export(shipped)

    def run_raw(batch):
        with torch.no_grad():
            return dict(zip(OUTPUT_NAMES, [t.numpy() for t in pipeline(torch.from_numpy(batch))]))

    result = run_check(run_raw, load_references(shipped, spec), spec, FP32_BOUNDS, "fp32")
    assert result.passed, result.summary()
    assert result.frames >= 2 and result.ids_total >= 2 * result.frames  # two flies on every reference frame


def test_export_takes_distinct_nodes_from_the_run_s_config_yaml(trained, tmp_path, capsys):
    """It changes inference only: a user adds, changes or drops it in a trained run's
    config.yaml and re-exports; a bad section is one line naming the file, nothing written."""
    model_dir, _ = trained
    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    config = yaml.safe_load((run / "config.yaml").read_text())

    def export_with(section, name: str):
        if section is None:
            config["instance"].pop("distinct_nodes", None)
        else:
            config["instance"]["distinct_nodes"] = section
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        code = cli(["export", str(run), "-o", str(tmp_path / name)])
        return code, capsys.readouterr()

    code, out = export_with({"nodes": ["wingL", "wingR"], "min_distance_px": 4.0}, "wings")
    assert code == 0 and "distinct nodes (one place each in an animal; instance.distinct_nodes): wingL, wingR" in out.out
    assert ExportSpec.load(tmp_path / "wings").architecture["pipeline"]["distinct_nodes"] == {
        "nodes": [3, 4], "names": ["wingL", "wingR"], "min_distance_px": 4.0, "exclusion_px": 8.0}
    code, out = export_with(None, "plain")
    assert code == 0 and "distinct nodes" not in out.out
    assert "pipeline" not in ExportSpec.load(tmp_path / "plain").architecture
    # read as `rtpose train` reads a config: the line of the key, the same message as its check
    for section, key, says in [
            ({"nodes": ["wingL", "wingr"]}, "nodes:",
             "instance.distinct_nodes.nodes.1: 'wingr' is not a node of the skeleton (did you mean 'wingR'?)"),
            ({"nodes": ["wingL"]}, "nodes:",
             "instance.distinct_nodes.nodes: List should have at least 2 items after validation, not 1"),
            (["wingL", "wingR"], "distinct_nodes:",  # as `rtpose train` says it
             "instance.distinct_nodes: give a mapping, e.g. {nodes: [forelegL4, forelegR4], min_distance_px: 3, "
             "exclusion_px: 8}")]:
        code, out = export_with(section, "bad")
        text = (run / "config.yaml").read_text().splitlines()
        start = next(n for n, line in enumerate(text) if line.strip() == "distinct_nodes:")
        line = next(n for n, line in enumerate(text) if n >= start and line.strip().startswith(key)) + 1
        err = out.err.strip().splitlines()
        assert code == 2 and err == [f"error: {run / 'config.yaml'}:{line}: {says}"], err
        assert not (tmp_path / "bad").exists()


def test_the_shipped_model_keeps_one_fly_s_leg_tips_apart_in_the_graph(flies_video_path):
    """Validation frame 1190: without ``distinct_nodes`` the shipped network puts two leg tips
    of one fly within 3 px; with it (what the shipped graph holds) every leg tip has a
    place of its own, in ONNX Runtime's int8 and fp32 graphs and in torch's rebuild alike."""
    shipped = Path(__file__).resolve().parent.parent / "models" / "flies13"
    spec = ExportSpec.load(shipped)
    tips = spec.architecture["pipeline"]["distinct_nodes"]["nodes"]
    with VideoReader(flies_video_path) as r:
        batch = r.read(1190)[None, None]

    def closest_tips(points: np.ndarray) -> float:  # (instances, nodes, 2) -> px
        t = points[:, tips]
        d = np.linalg.norm(t[:, :, None] - t[:, None], axis=-1) + np.eye(len(tips)) * 1e9
        return float(np.nanmin(d))

    pipeline = pipeline_from_export(shipped)
    with torch.no_grad():
        with_rule = pipeline(torch.from_numpy(batch))[0][0].numpy()
        pipeline.distinct = None  # the same networks, each node its map's global peak
        without = pipeline(torch.from_numpy(batch))[0][0].numpy()
    assert closest_tips(without) < 3.0 < closest_tips(with_rule)
    for graph in ("fp32", "int8"):
        points = load_engine(shipped, "ort-cpu", precision=graph).run_raw(batch)["points"][0]
        assert closest_tips(points) > 3.0, graph
        assert np.abs(points - with_rule).max() < (0.01 if graph == "fp32" else 3.0), graph


# ---------------------------------------------------------------- bad input


def run_train_expecting_error(tmp_path, cfg: dict, capsys) -> str:
    code = cli(["train", str(write_config(tmp_path, cfg))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_unknown_config_key_names_field_and_line(tmp_path, flies_labels_path, capsys):
    cfg = tiny_config(flies_labels_path, tmp_path / "m")
    cfg["instance"]["sigmaa"] = 2.0
    msg = run_train_expecting_error(tmp_path, cfg, capsys)
    assert "instance.sigmaa" in msg and "unknown key" in msg and "train.yaml:" in msg


def test_frames_in_both_selections_are_said_to_be_kept_for_validation(tmp_path, flies_labels_path, capsys):
    cfg = tiny_config(flies_labels_path, tmp_path / "m", data__train_frames="1100-1199:10",
                      centroid__optim__max_epochs=1, instance__optim__max_epochs=1)
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    err = capsys.readouterr().err
    # 1190 is in both; 1100, ..., 1180 train
    assert "1 frame selected by both data.train_frames and data.val_frames: kept for validation only" in err
    assert "9 training frames, 2 validation frames" in err


def test_val_frames_that_select_no_labelled_frame_are_refused(tmp_path, flies_labels_path, capsys):
    cfg = tiny_config(flies_labels_path, tmp_path / "m", data__val_frames="2000-2100")
    msg = run_train_expecting_error(tmp_path, cfg, capsys)
    assert "data.val_frames: '2000-2100' selects no labelled frame" in msg and "train.yaml:" in msg
    assert "0-1199" in msg or "1199" in msg  # what the labels do hold
    assert not (tmp_path / "m" / "centroid").exists()  # refused before training


def test_anchor_not_in_skeleton(tmp_path, flies_labels_path, capsys):
    msg = run_train_expecting_error(tmp_path, tiny_config(flies_labels_path, tmp_path / "m", data__anchor_part="tail"),
                                    capsys)
    assert "anchor_part" in msg and "'tail'" in msg and "thorax" in msg


def test_identity_head_needs_tracks(tmp_path, minimal_labels_path, capsys):
    cfg = tiny_config(minimal_labels_path, tmp_path / "m", data__anchor_part="A", instance__distinct_nodes=None)
    del cfg["data"]["train_frames"], cfg["data"]["val_frames"]
    msg = run_train_expecting_error(tmp_path, cfg, capsys)
    assert "tracks" in msg and "class_head: null" in msg


def test_labels_without_user_instances(tmp_path, flies_labels_path, capsys):
    labels = sio.load_slp(str(flies_labels_path))
    only_predicted = sio.Labels(
        labeled_frames=[sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=[
            sio.PredictedInstance.from_numpy(i.numpy(), skeleton=labels.skeleton, score=1.0) for i in lf.instances])
            for lf in labels.labeled_frames[:3]],
        videos=labels.videos, skeletons=labels.skeletons, tracks=labels.tracks)
    path = tmp_path / "predicted_only.slp"
    sio.save_slp(only_predicted, str(path))
    cfg = tiny_config(path, tmp_path / "m")
    del cfg["data"]["train_frames"], cfg["data"]["val_frames"]
    msg = run_train_expecting_error(tmp_path, cfg, capsys)
    assert "no user-labeled instances" in msg and "predicted_only.slp" in msg


def test_unreadable_video(tmp_path, flies_labels_path, capsys):
    labels = sio.load_slp(str(flies_labels_path))
    labels.videos[0].replace_filename(str(tmp_path / "gone.mp4"), open=False)
    path = tmp_path / "moved.slp"
    sio.save_slp(labels, str(path))
    msg = run_train_expecting_error(tmp_path, tiny_config(path, tmp_path / "m"), capsys)
    assert "gone.mp4" in msg and "not found" in msg


def test_frame_size_not_divisible_by_max_stride_is_padded(tmp_path, minimal_labels_path):
    """384 px frames at scale 0.25 are 96 px, not a multiple of the centroid's max stride 64."""
    cfg = tiny_config(minimal_labels_path, tmp_path / "m", data__anchor_part="A", instance__distinct_nodes=None)
    del cfg["data"]["train_frames"], cfg["data"]["val_frames"]
    cfg["centroid"]["input_scale"] = 0.25
    cfg["centroid"]["unet"] = {**TINY_UNET, "down_blocks": 5, "up_blocks": 4}
    cfg["instance"]["crop_size"] = None
    cfg["instance"]["class_head"] = None
    cfg["centroid"]["optim"]["max_epochs"] = cfg["instance"]["optim"]["max_epochs"] = 1
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    assert cli(["export", str(tmp_path / "m"), "-o", str(tmp_path / "x")]) == 0
    engine = load_engine(tmp_path / "x", "ort-cpu")
    assert (engine.spec.frame_height, engine.spec.frame_width) == (384, 384)
    with VideoReader(minimal_labels_path) as r:
        poses = engine.infer(r.read(0))
    assert poses.points.shape[1:] == (2, 2) and poses.identity_scores.shape[1] == 0


def test_int8_quantisation_keeps_points_and_rebuilds_in_torch(trained, exported, fly_frames, tmp_path):
    """Conv-only int8 QDQ: the graph runs, points stay close to fp32, and the torch
    rebuild dequantises its weights (what torch-cuda does with an int8 export)."""
    import onnx

    from rtpose.export.command import _int8_frames
    from rtpose.export.quantize import MAX_WEIGHT, largest_weight, point_shift_px, quantize_int8

    calibration, check = _int8_frames(trained[0], n_calibration=4)
    assert len(calibration) == 4 and len(check) == 2  # training frames vs the held-out ones
    int8_dir = tmp_path / "int8"
    int8_dir.mkdir()
    shutil.copy(exported / "rtpose.json", int8_dir)
    quantize_int8(exported / "model.onnx", int8_dir / "model.onnx", calibration)
    graph = onnx.load(str(int8_dir / "model.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear", "TopK"} <= {n.op_type for n in graph.node}
    weights = {i.name for i in graph.initializer}
    # the convolutions that write confidence maps stay fp32: refinement reads their peak shapes
    assert {"centroid.confmaps.weight", "instance.confmaps.weight"} <= weights
    assert not any(w.endswith("confmaps.weight_quantized") for w in weights)
    assert "instance.backbone.stem.0.weight_quantized" in weights
    # the Relu after each quantised convolution is folded into its output range
    producer = {out: node for node in graph.node for out in node.output}

    def source(name):
        node = producer.get(name)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer.get(node.input[0])
        return node

    quantised_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in producer
                       and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert quantised_convs
    assert not [n.name for n in graph.node if n.op_type == "Relu" and (src := source(n.input[0])) is not None
                and src in quantised_convs]
    fp32_relus = sum(n.op_type == "Relu" for n in onnx.load(str(exported / "model.onnx")).graph.node)
    assert sum(n.op_type == "Relu" for n in graph.node) < fp32_relus
    # 7-bit weights: 2 * 255 * 64 fits the int16 sums of CPUs without VNNI (see quantize.py)
    assert 32 < largest_weight(int8_dir / "model.onnx") <= MAX_WEIGHT
    shift = point_shift_px(exported / "model.onnx", int8_dir / "model.onnx", fly_frames)
    assert shift["frames"] == 3 and np.isfinite(shift["median"])
    rebuilt = pipeline_from_export(int8_dir)  # raises if any weight could not be recovered
    fp32 = pipeline_from_export(exported)
    for name, value in fp32.state_dict().items():
        recovered = rebuilt.state_dict()[name]
        scale = value.abs().max().clamp(min=1e-6)
        assert (recovered - value).abs().max() <= 0.02 * scale, name  # per-channel int8: < 1% of range


def test_a_refused_int8_graph_leaves_the_fp32_export_and_exit_status_3(trained, tmp_path, monkeypatch, capsys,
                                                                        flies_video_path):
    """An int8 graph that fails its check is not written, the fp32 export is, and the
    refusal is said on stderr and kept in rtpose.json."""
    import rtpose.export.quantize as quantize
    from rtpose.export.spec import ExportSpec

    monkeypatch.setattr(quantize, "MAX_MEDIAN_SHIFT_PX", -1.0)  # any shift fails the check
    out = tmp_path / "export"
    (out).mkdir()
    (out / "model.int8.onnx").write_bytes(b"stale")  # from an earlier export: must not survive
    code = cli(["export", str(trained[0]), "-o", str(out), "--int8", "--calibration-frames", "4"])
    assert code == 3
    assert "int8 refused: points moved" in capsys.readouterr().err
    spec = ExportSpec.load(out)
    assert spec.graphs == {"fp32": "model.onnx"} and (out / "model.onnx").exists()
    assert not (out / "model.int8.onnx").exists()
    assert "bound -1.0" in spec.extra["int8_refused"]["reason"]
    assert cli(["check", "-m", str(out)]) == 0  # what was written runs
    capsys.readouterr()
    assert cli(["predict", "-m", str(out), "-i", str(flies_video_path), "--frames", "1200", "--int8",
                "-o", str(tmp_path / "p.slp")]) == 2
    assert "its int8 graph was refused at export: points moved" in capsys.readouterr().err


def _strict_json(path: Path):
    """``path`` parsed as strict JSON (RFC 8259): a bare NaN or Infinity is an error."""
    def refuse(name: str):
        raise AssertionError(f"{path} holds {name}: not JSON (undefined figures are null)")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_the_training_runs_json_files_are_strict_json_with_null_for_undefined_figures(trained, capsys):
    """A tiny run finds few or no animals, so its node errors and identity accuracy are
    undefined: report.json, model.json and validation_report.json say null, never NaN, and
    the printed report says "-" where its table does."""
    model_dir, cfg = trained
    for name in ("report.json", "model.json", "validation_report.json"):
        _strict_json(model_dir / name)
    report = _strict_json(model_dir / "report.json")
    info = _strict_json(model_dir / "model.json")
    undefined = [v for v in (*report["dist_px"].values(), report["id_accuracy"], info["instance"].get("val_dist_p50"))
                 if v is None]
    assert undefined, "the tiny run defined every figure: this test no longer sees the undefined case"
    from rtpose.train.report import print_report
    from rich.console import Console

    console = Console(record=True, width=300)
    print_report(model_dir, report, "this CPU", console)
    text = console.export_text()
    assert "nan" not in text.lower() and "node error p" in text
    if report["dist_px"].get("p50") is None:
        assert "node error p50 -, p90 -, p95 - (no node matched)" in text


def test_json_writer_turns_nan_and_infinities_into_null():
    import numpy as np
    from rtpose import jsonsafe

    text = jsonsafe.dumps({"a": float("nan"), "b": [np.float32("inf"), np.int64(3), 1.5], "c": np.array([np.nan, 2.0]),
                           "d": np.bool_(True)})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "a": None, "b": [None, 3, 1.5], "c": [None, 2.0], "d": True}
