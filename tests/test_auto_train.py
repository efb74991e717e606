"""``rtpose train LABELS.slp``: settings derived from real labels (mice2, flies13, the
embedded minimal and two-frame packages), small real-label variants made with sleap-io
(moved videos, colour video, never-visible nodes, 50 nodes, bad labels), and short
end-to-end runs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio
import yaml

from rtpose.errors import RtposeError
from rtpose.cli import main as cli
from rtpose.data import labelstats as ls
from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.data.samples import fraction_outside_crop, parse_frame_selection, select_frames
from rtpose.data.video import VideoReader
from rtpose.train.auto import derive, frame_macs, reference_macs
from rtpose.train.config import TrainConfig
from rtpose.config import load_config

TINY = ["--set", "centroid.unet.filters=8", "--set", "instance.unet.filters=8"]



def _frames(path: Path):
    labels = load_labels(path)
    return labels, user_frames(labels, path)


def _variant(src: Path, tmp_path: Path, edit, video_name: str | None = "video.mp4", name: str = "variant.slp") -> Path:
    """A copy of real labels changed by ``edit(labels)``, saved in ``tmp_path`` with its
    video linked beside it (never copied) and the stored video path on another computer."""
    labels = sio.load_slp(str(src), open_videos=False)
    edit(labels)
    if video_name is not None:
        video = src.parent / video_name
        link = tmp_path / video_name
        if not link.exists():
            link.symlink_to(video)
        labels.replace_filenames(new_filenames=[f"C:\\Users\\lab\\cage\\{video_name}"], open_videos=False)
    out = tmp_path / name
    sio.save_slp(labels, str(out))
    return out


# ---- what the labels decide -----------------------------------------------------------------

def test_mice_settings_follow_the_labels(mice_path):
    cfg, why = derive(mice_path, 15, measure=False)
    labels, frames = _frames(mice_path)
    # the issue's own hand choice, found from visibility and reach
    assert cfg.data.anchor_part == "Trunk"
    # a block of the last labelled frames, not random ones, never trained on
    val = select_frames(frames, cfg.data.val_frames)
    train = select_frames(frames, cfg.data.train_frames)
    assert [f.frame_idx for f in val] == list(range(60, 70))
    assert not {f.frame_idx for f in val} & {f.frame_idx for f in train}
    # the crop holds (almost) every labelled node around the anchor
    anchor = node_names(labels).index("Trunk")
    assert cfg.instance.crop_size % 16 == 0
    assert fraction_outside_crop(train, anchor, cfg.instance.crop_size) < 0.01
    # two tracks on every instance: an identity head; the centroid net sees a mouse >= 12 px
    assert cfg.instance.class_head is not None and class_names(labels) == ["white", "black"]
    stats = ls.label_stats(frames, node_names(labels), class_names(labels))
    assert stats.animal_size_px * cfg.centroid.input_scale >= ls.MIN_ANIMAL_PX
    # the mice huddle (closest trunks ~52 px apart): the centroid map keeps them >= 4 map px apart,
    # which takes 1/4 where the animal size alone would allow 1/8
    gap = ls.anchor_gap(train, anchor)
    assert 45 < gap < 60
    assert gap * cfg.centroid.input_scale / 2 >= ls.MIN_ANCHOR_GAP_MAP_PX
    assert cfg.centroid.input_scale == 0.25 and ls.centroid_input_scale(stats.animal_size_px, (768, 1024)) == 0.125
    assert cfg.instance.augment.neighbour_probability > 0
    keys = {k for k, _, _ in why.reasons}
    assert {"data.anchor_part", "instance.crop_size", "centroid.input_scale", "frames", "cost"} <= keys
    # the Trunk is hidden in 29% of the instances: those anchors are estimated (rtpose.data.anchors)
    assert cfg.data.missing_anchor == "estimate" and "data.missing_anchor" in keys
    # a mouse needs a 192-px crop: a stride-4 stem keeps the frame near flies13's cost (it
    # was 2.1x with stride 2), and the cost line counts the networks as trained
    assert cfg.instance.crop_size == 192 and cfg.instance.unet.stem_stride == 4
    cost = dict((k, (v, r)) for k, v, r in why.reasons)["cost"]
    assert 1.0 < float(cost[1].split("x ")[0]) < 1.5
    _, forced = derive(mice_path, 15, overrides=["instance.unet.stem_stride=2"], measure=False)
    assert float(dict((k, r) for k, _, r in forced.reasons)["cost"].split("x ")[0]) > 2.0


def test_mice_video_is_grey_in_three_channels_and_non_square(mice_path):
    _, why = derive(mice_path, 15, measure=False)
    frames = dict((k, v) for k, v, _ in why.reasons)["frames"]
    assert frames.startswith("768x1024 (HxW) grey (stored as 3 channels)")


def test_flies_settings_match_the_hand_tuned_config(flies_labels_path):
    cfg, _ = derive(flies_labels_path, 20, measure=False)
    hand = load_config(Path(__file__).resolve().parent.parent / "experiments" / "train" / "flies13.yaml",
                       TrainConfig)
    assert cfg.data.anchor_part == hand.data.anchor_part == "thorax"
    assert cfg.data.val_frames == hand.data.val_frames == "1150-1199"
    assert cfg.centroid.input_scale == hand.centroid.input_scale
    assert abs(cfg.instance.crop_size - hand.instance.crop_size) <= 16
    assert cfg.instance.unet.stem_stride == hand.instance.unet.stem_stride == 2
    labels, frames = _frames(flies_labels_path)
    train = select_frames(frames, cfg.data.train_frames)
    still = sum(f.frame_idx < 1000 for f in train)
    moving = sum(f.frame_idx >= 1000 for f in train)
    # the flies hold still until ~1000: those frames are near copies, thinned like "0-999:10"
    assert 50 <= still <= 150 and moving > 100


def test_anchor_gap_is_the_closest_other_anchor_and_sets_the_centroid_scale():
    from rtpose.data.labels import FrameLabels

    def frame(*anchors):
        pts = np.full((len(anchors), 2, 2), np.nan, np.float32)
        for i, (x, y) in enumerate(anchors):
            pts[i, 0] = (x, y)  # node 0, the anchor
            pts[i, 1] = (x + 10, y)
        return FrameLabels(Path("v.mp4"), 0, pts, np.full(len(anchors), -1, np.int32))

    assert ls.anchor_gap([frame((0, 0))], 0) == float("inf")  # one animal: no gap
    frames = [frame((0, 0), (40, 0))] + [frame((0, 0), (100, 0))] * 19
    assert ls.anchor_gap(frames, 0, q=0) == 40 and ls.anchor_gap(frames, 0, q=50) == 100
    assert ls.anchor_gap([frame((0, 0), (30, 40))], None) == 50  # bounding-box centres
    # 120 px animals in a 1024 frame: 1/8 by size alone; anchors 50 px apart need 1/4 for 4 map px
    assert ls.centroid_input_scale(120, (1024, 1024)) == 0.125
    assert ls.centroid_input_scale(120, (1024, 1024), anchor_gap_px=50, output_stride=2) == 0.25
    assert ls.centroid_input_scale(120, (1024, 1024), anchor_gap_px=64, output_stride=2) == 0.125


def test_format_selection_round_trips():
    idx = [0, 10, 20, 30, 31, 32, 33, 50, 52, 60]
    text = ls.format_selection(idx)
    got = sorted({i for a, b, s in parse_frame_selection(text) for i in range(a, b + 1, s)})
    assert got == idx


def test_embedded_package_without_tracks(minimal_labels_path):
    cfg, why = derive(minimal_labels_path, 5, measure=False)
    assert cfg.instance.class_head is None  # no tracks: no identity head
    assert cfg.data.val_frames is None  # one labelled frame: nothing to hold out


def test_cost_model_matches_the_shipped_architecture():
    ref = reference_macs()
    assert ref is not None
    spec = json.loads((Path(__file__).resolve().parent.parent / "models" / "flies13" / "rtpose.json").read_text())
    one = frame_macs(spec["architecture"], (1024, 1024), 1, 13)
    two = frame_macs(spec["architecture"], (1024, 1024), 2, 13)
    assert ref[0] == pytest.approx(two) and two > one > 0


# ---- variants of real labels ------------------------------------------------------------------

def test_video_saved_on_another_computer_is_found_beside_the_labels(mice_path, tmp_path):
    path = _variant(mice_path, tmp_path, lambda labels: None)
    assert "Users/lab/cage" in sio.load_slp(str(path), open_videos=False).videos[0].filename.replace("\\", "/")
    cfg, _ = derive(path, 5, measure=False)
    assert cfg.data.anchor_part == "Trunk"


def test_never_visible_node_is_not_the_anchor_and_trains(mice_path, tmp_path):
    def hide_trunk(labels):
        for lf in labels.labeled_frames:
            for inst in lf.user_instances:
                inst.points["xy"][6] = np.nan
                inst.points["visible"][6] = False
    path = _variant(mice_path, tmp_path, hide_trunk)
    cfg, _ = derive(path, 5, measure=False)
    assert cfg.data.anchor_part not in (None, "Trunk")


def test_fifty_node_skeleton(flies_labels_path, tmp_path):
    def fifty(labels):
        labels.labeled_frames = [lf for lf in labels.labeled_frames if lf.frame_idx >= 1180]
        old = labels.skeletons[0]
        names = [n.name for n in old.nodes] + [f"extra{i}" for i in range(50 - len(old.nodes))]
        skel = sio.Skeleton(names)
        for lf in labels.labeled_frames:
            new = []
            for inst in lf.instances:
                pts = inst.numpy()
                rng = np.random.default_rng(0)
                extra = pts[rng.integers(0, len(pts), 50 - len(pts))] + rng.normal(0, 3, (50 - len(pts), 2))
                new.append(sio.Instance.from_numpy(np.concatenate([pts, extra]), skel, track=inst.track))
            lf.instances = new
        labels.skeletons = [skel]
    path = _variant(flies_labels_path, tmp_path, fifty, video_name="clip.mp4")
    cfg, _ = derive(path, 5, measure=False)
    assert len(node_names(load_labels(path, open_videos=False))) == 50
    assert cfg.instance.class_head is not None


def test_colour_video_is_said_and_trained_grey(mice_path, tmp_path):
    """A real colour video (mice frames 0-9, tinted) under real labels of those frames."""
    with VideoReader(mice_path.parent / "video.mp4") as r:
        grey = [r.read(i) for i in range(10)]
    colour_path = tmp_path / "colour.avi"
    writer = cv2.VideoWriter(str(colour_path), cv2.VideoWriter_fourcc(*"MJPG"), 10, grey[0].shape[::-1])
    for g in grey:
        writer.write(np.dstack([g // 2, g, np.full_like(g, 200)]))
    writer.release()

    def first_ten(labels):
        labels.labeled_frames = [lf for lf in labels.labeled_frames if lf.frame_idx < 10]
        labels.replace_filenames(new_filenames=[str(colour_path)], open_videos=False)
    path = _variant(mice_path, tmp_path, first_ten, video_name=None)
    _, why = derive(path, 5, measure=False)
    value, reason = [(v, r) for k, v, r in why.reasons if k == "frames"][0]
    assert "colour" in value and "grey" in reason


@pytest.mark.parametrize("fault, says", [("no_user", "no user-labelled instances"),
                                         ("one_node", "one node"),
                                         ("some_tracks", "have no track")])
def test_bad_labels_get_one_line_saying_what_to_fix(mice_path, tmp_path, capsys, fault, says):
    def no_user(labels):
        for lf in labels.labeled_frames:
            lf.instances = [sio.PredictedInstance.from_numpy(i.numpy(), i.skeleton, point_scores=np.ones(15),
                                                             score=1.0) for i in lf.instances]

    def one_node(labels):
        skel = sio.Skeleton(["Trunk"])
        for lf in labels.labeled_frames:
            lf.instances = [sio.Instance.from_numpy(i.numpy()[6:7], skel, track=i.track) for i in lf.instances]
        labels.skeletons = [skel]

    def some_tracks(labels):
        for lf in labels.labeled_frames[:5]:
            lf.instances[0].track = None
    path = _variant(mice_path, tmp_path, {"no_user": no_user, "one_node": one_node, "some_tracks": some_tracks}[fault])
    assert cli(["train", str(path), "--minutes", "1", "-o", str(tmp_path / "model")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and str(path) in errors[0], errors
    assert not (tmp_path / "model").exists()  # refused before anything was written


def test_one_node_skeleton_trains_given_a_crop(mice_path, tmp_path):
    def one_node(labels):
        skel = sio.Skeleton(["Trunk"])
        for lf in labels.labeled_frames:
            lf.instances = [sio.Instance.from_numpy(i.numpy()[6:7], skel, track=i.track) for i in lf.instances]
        labels.skeletons = [skel]
    path = _variant(mice_path, tmp_path, one_node)
    cfg, _ = derive(path, 5, overrides=["instance.crop_size=160"], measure=False)
    assert cfg.instance.crop_size == 160 and cfg.data.anchor_part == "Trunk"


def test_a_missing_labels_file_is_one_line_and_nothing_else(tmp_path, capsys):
    assert cli(["train", str(tmp_path / "nope.slp"), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.slp: no such file" in err[0], err  # no banner before it
    assert not (tmp_path / "m").exists()
    (tmp_path / "mice.trainval.slp").write_bytes(b"")  # a misspelt name gets the file beside it
    assert cli(["train", str(tmp_path / "mice.trainvl.slp"), "-o", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"no such file (did you mean '{tmp_path / 'mice.trainval.slp'}'?)")
    # with --minutes (the README's form) the path is still what is blamed, not --minutes
    assert cli(["train", str(tmp_path / "mice.trainvl.slp"), "--minutes", "1", "-o", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"no such file (did you mean '{tmp_path / 'mice.trainval.slp'}'?)")
    # the folder instead of the file in it: the files it holds are named
    assert cli(["train", str(tmp_path), "--minutes", "1", "-o", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path}: is a folder; rtpose train takes a labels file "
                                               "(.slp) or a config (.yaml): it holds mice.trainval.slp")
    assert not (tmp_path / "m").exists()


def test_minutes_must_be_positive(two_frames_path, tmp_path, capsys):
    assert cli(["train", str(two_frames_path), "--minutes", "0", "-o", str(tmp_path / "m")]) == 2
    out = capsys.readouterr()
    assert out.err.strip() == "error: --minutes must be positive, got 0"
    assert "deriving" not in out.out  # no banner announcing a run of 0 min


# ---- end to end ---------------------------------------------------------------------------------

def test_labels_in_model_out_then_rerun_its_config(two_frames_path, tmp_path, capsys, monkeypatch):
    """Two embedded fly frames with tracks: derive, train briefly, report, and the saved
    config.yaml reruns as a config, also where the data directory has moved."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(two_frames_path, data / "two_frames.pkg.slp")
    monkeypatch.setenv("RTPOSE_DATA", str(data))
    out = tmp_path / "model"
    assert cli(["train", str(data / "two_frames.pkg.slp"), "--minutes", "0.6", "-o", str(out), *TINY]) == 0
    # the printed settings say what --set replaced
    printed = " ".join(capsys.readouterr().err.split())  # rich wraps the lines at the terminal width
    assert "--set centroid.unet.filters=8 (given: replaces what is derived above)" in printed
    for name in ("config.yaml", "model.json", "report.json", "centroid/loss.png", "instance/loss.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 1 and "map" in report and report["latency_ms"]["p50"] > 0
    info = json.loads((out / "model.json").read_text())
    assert info["wall_minutes"] < 0.6 + 0.5  # the budget holds (generous: a busy machine)
    # how --minutes is spent, said as training starts (the measured parts) and at the end
    spent = info["time"]
    assert spent["minutes_asked"] == 0.6 and min(spent["deriving"], spent["setup"], spent["training"]) > 0
    start = re.search(r"time: --minutes 0\.6 = ([\d.]+) min deriving \+ ([\d.]+) setup \(labels, frames, precision "
                      r"choice\) \+ ([\d.]+) training \(centroid up to [\d.]+, instance the rest\) \+ ~([\d.]+) kept "
                      r"for the final report", printed)
    assert start, printed
    assert float(start[1]) == pytest.approx(spent["deriving"], abs=0.006)
    assert float(start[2]) == pytest.approx(spent["setup"], abs=0.006)
    assert float(start[3]) == pytest.approx(max(saved_budget(out) - spent["setup"], 0.1), abs=0.006)
    nets = info["centroid"]["wall_minutes"] + info["instance"]["wall_minutes"]
    assert spent["training"] == pytest.approx(nets, abs=0.05)  # the networks' own clocks (rounded to 0.01)
    total = report["time"]["total_minutes"]
    assert total == pytest.approx(spent["deriving"] + spent["setup"] + spent["training"]
                                  + report["time"]["report_minutes"], abs=0.002)
    assert (f"time: {spent['training']:.2f} min training of --minutes 0.6; the rest: {spent['deriving']:.2f} "
            f"deriving, {spent['setup']:.2f} setup, {report['time']['report_minutes']:.2f} validation and this "
            f"report; {total:.2f} min in all") in printed
    rows = list(csv.DictReader((out / "instance" / "training_log.csv").open()))
    assert rows
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["anchor_part"] == "thorax" and saved["instance"]["optim"]["epoch_seconds"] > 0
    assert saved["data"]["labels"] == "${RTPOSE_DATA}/two_frames.pkg.slp"  # not this machine's path
    # a stopped run resumed with the same labels goes on as its config.yaml says, without --minutes again
    # (deriving anew would take the default 20 minutes and re-plan the epochs from a new step time)
    stopped = tmp_path / "stopped"
    shutil.copytree(out, stopped)
    (stopped / "model.json").unlink()
    epochs = {net: len(list(csv.DictReader((out / net / "training_log.csv").open()))) for net in ("centroid", "instance")}
    capsys.readouterr()
    assert cli(["train", str(data / "two_frames.pkg.slp"), "-o", str(stopped), "--resume",
                "--set", f"centroid.optim.max_epochs={epochs['centroid'] + 1}",
                "--set", f"instance.optim.max_epochs={epochs['instance'] + 1}"]) == 0
    printed_resume = " ".join(capsys.readouterr().err.split())
    assert f"resuming {stopped} as its config.yaml says (budget_minutes {saved['budget_minutes']:g};" in printed_resume
    assert "deriving" not in printed_resume
    resumed = yaml.safe_load((stopped / "config.yaml").read_text())
    assert resumed["budget_minutes"] == saved["budget_minutes"]
    assert resumed["instance"]["optim"]["epoch_seconds"] == saved["instance"]["optim"]["epoch_seconds"]
    assert (stopped / "model.json").exists()
    # ... and is refused for other labels, before anything is touched
    assert cli(["train", str(two_frames_path), "-o", str(tmp_path / "stopped2"), "--resume"]) == 2  # nothing there
    shutil.copytree(out, tmp_path / "stopped2")
    (tmp_path / "stopped2" / "model.json").unlink()
    other = tmp_path / "other.pkg.slp"
    shutil.copy(two_frames_path, other)
    capsys.readouterr()
    assert cli(["train", str(other), "-o", str(tmp_path / "stopped2"), "--resume"]) == 2
    assert f"{tmp_path / 'stopped2'} was trained from {data / 'two_frames.pkg.slp'}, not {other}" in \
        capsys.readouterr().err
    # the saved config reruns (shortened), with the data somewhere else
    (data / "two_frames.pkg.slp").rename(tmp_path / "two_frames.pkg.slp")
    monkeypatch.setenv("RTPOSE_DATA", str(tmp_path))
    assert cli(["train", str(out / "config.yaml"), "-o", str(tmp_path / "again"),
                "--set", "budget_minutes=0.2", "--set", "centroid.optim.max_epochs=1",
                "--set", "instance.optim.max_epochs=1"]) == 0
    assert (tmp_path / "again" / "model.json").exists()
    assert "time: budget_minutes 0.2 = " in " ".join(capsys.readouterr().err.split())
    # a second run into a trained model's directory is refused before its banner ...
    before = (out / "model.json").read_bytes()
    assert cli(["train", str(two_frames_path), "--minutes", "0.6", "-o", str(out), *TINY]) == 2
    err = capsys.readouterr()
    assert f"{out} already holds a trained model (model.json, centroid, instance)" in err.err
    assert "--overwrite" in err.err
    assert "deriving" not in err.out + err.err and (out / "model.json").read_bytes() == before
    # ... and a mistake that --overwrite would reach only after deriving costs the old model nothing
    for mistake in (["--set", "data.anchor_part=thorx"], ["--set", "data.nosuch=1"], ["--minutes", "0"],
                    ["--set", "foo"]):
        capsys.readouterr()
        assert cli(["train", str(two_frames_path), "--minutes", "0.6", "-o", str(out), "--overwrite",
                    *TINY, *mistake]) == 2, mistake
        assert (out / "model.json").read_bytes() == before and (out / "instance").is_dir(), mistake
        if "foo" in mistake:  # not KEY=VALUE: said before the deriving starts
            err = capsys.readouterr()
            assert "deriving" not in err.out + err.err and "--set 'foo': expected KEY=VALUE" in err.err
    capsys.readouterr()
    # ... and --overwrite removes the old run's files first: nothing of the old model stays
    (out / "instance" / "stale.pt").write_bytes(b"old")
    old_report = (out / "report.json").read_bytes()
    assert cli(["train", str(tmp_path / "again" / "config.yaml"), "-o", str(out), "--overwrite",
                "--set", "budget_minutes=0.2", "--set", "centroid.optim.max_epochs=1",
                "--set", "instance.optim.max_epochs=1"]) == 0
    assert (out / "model.json").read_bytes() != before and not (out / "instance" / "stale.pt").exists()
    assert (out / "report.json").read_bytes() != old_report  # the new model's report (a config run ends with one)
    assert cli(["train", str(out / "config.yaml"), "-o", str(out), "--resume", "--overwrite"]) == 2


def saved_budget(model_dir: Path) -> float:
    return float(yaml.safe_load((model_dir / "config.yaml").read_text())["budget_minutes"])


def test_epochs_are_replanned_from_the_observed_step_rate(flies_labels_path, tmp_path):
    """epoch_seconds: the first epoch has min_steps_per_epoch steps, later ones as many
    as fit the observed rate (here far more than one)."""
    from test_train_export import tiny_config, write_config

    cfg = tiny_config(flies_labels_path, tmp_path / "model")
    cfg["centroid"]["optim"].update({"batch_size": 8, "min_steps_per_epoch": 1, "epoch_seconds": 8.0,
                                     "max_epochs": 3})
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    rows = list(csv.DictReader((tmp_path / "model" / "centroid" / "training_log.csv").open()))
    steps = [int(r["steps"]) for r in rows]
    assert steps[0] == 1 and min(steps[1:]) > 1, steps


def test_bounding_box_centre_anchor_trains_and_exports(flies_labels_path, tmp_path):
    """``data.anchor_part: null`` (labels where no node is visible often enough) anchors
    each instance on its visible nodes' bounding-box centre, through export."""
    from test_train_export import tiny_config, write_config

    cfg = tiny_config(flies_labels_path, tmp_path / "model", data__anchor_part=None)
    cfg["centroid"]["optim"]["max_epochs"] = cfg["instance"]["optim"]["max_epochs"] = 1
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    assert json.loads((tmp_path / "model" / "model.json").read_text())["anchor_part"] is None
    assert cli(["export", str(tmp_path / "model"), "-o", str(tmp_path / "export")]) == 0
    assert json.loads((tmp_path / "export" / "rtpose.json").read_text())["anchor_part"] is None


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    import rtpose.train.command as command

    def interrupted(cfg, output=None, resume=False):
        (Path(output) / "centroid").mkdir(parents=True)
        (Path(output) / "centroid" / "last.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "train", interrupted)
    out = tmp_path / "model"
    assert cli(["train", str(Path(__file__).parents[1] / "experiments/train/flies13.yaml"), "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"stopped: centroid/last.pt kept in {out}; the same command with --resume "
                                        "continues from there"]  # one line: no bare "interrupted" after it


@pytest.mark.parametrize("found, oks_map, warns", [
    (7, 0.03, "only 7 of 20 validation instances found (OKS > 0.5) and OKS mAP 0.030 (below 0.2) after 4.1 min"),
    (17, 0.43, None),
    (0, 0.0, "no validation instance was found"),
    # a 4-minute mice run: 60% found is not below the bound, but its mAP is
    (12, 0.095, "OKS mAP 0.095 (below 0.2) after 4.1 min"),
    (18, 0.19, "OKS mAP 0.190 (below 0.2)"),
])
def test_the_report_warns_when_the_validation_scores_are_weak(tmp_path, found, oks_map, warns):
    from rich.console import Console

    from rtpose.train.report import print_report

    net = {"epochs": 3, "wall_minutes": 1.0, "best_epoch": 2, "stopped": "early stopping (no improvement in 5 epochs)"}
    (tmp_path / "model.json").write_text(json.dumps({"wall_minutes": 4.1, "centroid": net, "instance": net,
                                                     "class_names": ["white", "black"]}))
    report = {"map": oks_map, "frames": 10, "frame_range": "60-69", "n_gt": 20, "n_found": found, "n_matched": 20,
              "dist_px": {"p50": 7.2, "p90": 58.0, "p95": 75.0}, "id_accuracy": 1.0,
              "latency_ms": {"p50": 8.9, "p90": 9.3, "engine": "ort-cpu fp32 on test CPU (2 threads)"}}
    console = Console(record=True, width=200)
    print_report(tmp_path, report, "test CPU", console)
    text = console.export_text()
    assert (warns in text) if warns else ("warning" not in text)
    # a weak model's next step is more training, not an export
    assert ("next: train longer" in text) == bool(warns) and "rtpose export" in text
    # whether the model keeps up with a camera, from the measured p90
    assert "keeps up with a camera of up to 108 FPS" in text


@pytest.mark.parametrize("stopped, best_epoch, warns", [
    # the new-user mice run: 6 min, OKS mAP 0.326, its instance network's best epoch its last
    ("time budget (4.6 min)", 41, "the instance network (best epoch 41, last epoch 41) within 3 epochs of its best validation loss, "
     "so it was still improving"),
    ("time budget (4.6 min)", 39, "the instance network (best epoch 39, last epoch 41)"),
    ("time budget (4.6 min)", 30, None),  # the best epoch well before the budget: it had levelled off
    ("early stopping (no improvement in 10 epochs)", 41, None),
    ("max_epochs", 41, None),
])
def test_the_report_says_when_the_budget_stopped_a_network_still_improving(tmp_path, stopped, best_epoch, warns):
    from rich.console import Console

    from rtpose.train.report import print_report

    centroid = {"epochs": 20, "wall_minutes": 1.2, "best_epoch": 12, "stopped": "early stopping (no improvement)"}
    instance = {"epochs": 42, "wall_minutes": 4.6, "best_epoch": best_epoch, "stopped": stopped}
    # the wall time of a run's last session (after a --resume: only that part) is below its budget
    (tmp_path / "model.json").write_text(json.dumps({"wall_minutes": 5.2, "centroid": centroid, "instance": instance,
                                                     "class_names": ["white", "black"]}))
    (tmp_path / "config.yaml").write_text("budget_minutes: 6\n")
    report = {"map": 0.326, "frames": 10, "frame_range": "60-69", "n_gt": 20, "n_found": 17, "n_matched": 20,
              "dist_px": {"p50": 5.0, "p90": 30.0, "p95": 41.0}, "id_accuracy": 1.0}
    console = Console(record=True, width=300)
    print_report(tmp_path, report, "test CPU", console)
    lines = console.export_text().splitlines()
    budget = [line for line in lines if "time budget stopped" in line]
    if warns:
        # twice the budget, not twice the wall time
        assert len(budget) == 1 and warns in budget[0] and "(e.g. --minutes 12 and another -o)" in budget[0]
        assert budget[0].strip().startswith("warning:")
    else:
        assert not budget and not any("warning" in line for line in lines)
    # a network still improving is trained longer before it is exported
    assert any(line.strip().startswith("next: train longer") for line in lines) == bool(warns)


def test_a_short_run_that_found_nothing_is_offered_the_default_budget_not_twice_its_own(tmp_path):
    """A 1-minute run that found no validation instance: "--minutes 2" would still find nothing."""
    from rich.console import Console

    from rtpose.train.auto import DEFAULT_MINUTES
    from rtpose.train.report import print_report

    net = {"epochs": 9, "wall_minutes": 0.3, "best_epoch": 8, "stopped": "time budget (0.3 min)"}
    (tmp_path / "model.json").write_text(json.dumps({"wall_minutes": 0.7, "centroid": net, "instance": net,
                                                     "time": {"minutes_asked": 1.0, "deriving": 0.4, "setup": 0.0,
                                                              "training": 0.3}}))
    report = {"map": 0.0, "frames": 10, "frame_range": "60-69", "n_gt": 20, "n_found": 0, "n_matched": 0,
              "dist_px": {"p50": None, "p90": None, "p95": None}, "id_accuracy": None}
    console = Console(record=True, width=400)
    print_report(tmp_path, report, "test CPU", console)
    text = console.export_text()
    assert "no validation instance was found" in text
    assert f"(e.g. --minutes {DEFAULT_MINUTES:.0f} and another -o)" in text and "--minutes 2 " not in text


def test_resume_of_a_finished_run_in_the_default_dir_is_refused_before_the_banner(two_frames_path, tmp_path,
                                                                                   monkeypatch, capsys):
    """Without -o the model dir is runs/<labels name>: a finished run there is refused
    before anything is derived, printed or written."""
    monkeypatch.chdir(tmp_path)
    model_dir = Path("runs") / two_frames_path.name.split(".")[0]
    model_dir.mkdir(parents=True)
    net = {"epochs": 7, "best_epoch": 6, "stopped": "time budget (0.2 min)", "wall_minutes": 0.2}
    (model_dir / "model.json").write_text(json.dumps({"wall_minutes": 0.3, "centroid": net, "instance": net}))
    assert cli(["train", str(two_frames_path), "--minutes", "5", "--resume"]) == 2
    out = capsys.readouterr()
    assert out.err.strip() == (f"error: {model_dir} holds a finished run (centroid 7 epochs, instance 7 epochs, "
                               "0.3 min): --resume continues only a run that was stopped; train into another -o "
                               "with a larger budget (--minutes N for LABELS.slp, budget_minutes in a config), or "
                               "--overwrite to start again")
    assert "deriving" not in out.out + out.err and sorted(p.name for p in model_dir.iterdir()) == ["model.json"]


def test_a_stopped_run_is_offered_resume_and_a_finished_one_is_not(tmp_path):
    """--resume continues a run stopped before it finished; a finished run (model.json)
    has spent its budget, so only another -o or --overwrite is offered."""
    from rtpose.train.command import claim_output

    (tmp_path / "centroid").mkdir()
    # stopped before its first epoch ended: no checkpoint, nothing to continue
    with pytest.raises(RtposeError, match=r"nothing to resume \(no stopped run's centroid/last.pt"):
        claim_output(tmp_path, resume=True, overwrite=False)
    with pytest.raises(RtposeError, match=r"nothing to resume"):  # a mistyped -o
        claim_output(tmp_path / "elsewhere", resume=True, overwrite=False)
    (tmp_path / "centroid" / "last.pt").write_bytes(b"")
    with pytest.raises(RtposeError, match=r"already holds a trained model \(centroid\): give another -o, --resume"):
        claim_output(tmp_path, resume=False, overwrite=False)
    claim_output(tmp_path, resume=True, overwrite=False)  # continuing it is what --resume is for
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(RtposeError) as info:
        claim_output(tmp_path, resume=False, overwrite=False)
    assert "--overwrite to replace it" in str(info.value) and "--resume" not in str(info.value)


def test_the_budget_warning_for_both_networks_speaks_of_each():
    from rtpose.train.report import budget_warning

    stopped = {"epochs": 9, "best_epoch": 8, "stopped": "time budget (1.0 min)"}
    text = budget_warning({"centroid": {**stopped, "best_epoch": 6}, "instance": stopped}, "--minutes 2")
    assert text == ("the time budget stopped the centroid network (best epoch 6, last epoch 8) and the instance "
                    "network (best epoch 8, last epoch 8) within 3 epochs of their best validation loss, so each "
                    "was still improving: a longer budget would likely do better (e.g. --minutes 2)")
