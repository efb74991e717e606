"""Inputs from the wild (issue 13): packaged labels, containers that overstate their frame
count, frames that do not decode, nothing to score, defaults that do not fit the input,
and a camera faster than the machine. Each on the real inputs in ``../shared/cases`` or
on a file made here from the real fly clip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtpose.cli import main as cli_main
from rtpose.data.labels import load_labels
from rtpose.data.predictions import read_predictions
from rtpose.data.video import FrameNotDecoded, FrameNotHeld, StreamEnded, VideoReader
from rtpose.eval import metrics
from rtpose.jsonsafe import to_json_safe
from rtpose.hw.replay import ReplayCamera
from rtpose.live.daemon import Daemon
from rtpose.live.protocol import load_protocol
from rtpose.live.recorder import iter_records, read_recording
from rtpose.errors import RtposeError

REPO = Path(__file__).resolve().parent.parent
MODEL = str(REPO / "models" / "flies13")


def one_line_error(capsys) -> str:
    return one_line_error_text(capsys.readouterr().err)


def one_line_error_text(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# -- 1. embedded images: a .pkg.slp holds some frames of its video ----------------------


def test_a_package_is_read_through_its_embedded_frames(cases_dir, flies_video_path):
    with VideoReader(cases_dir / "two_frames.pkg.slp") as package, VideoReader(flies_video_path) as video:
        assert list(package.frame_indices) == [5, 12] and package.is_package
        for i in (5, 12):  # the source frame indices, with the source's pixels
            np.testing.assert_array_equal(package.read(i), video.read(i))
        with pytest.raises(FrameNotHeld, match="holds frames 5, 12"):
            package.read(0)
        assert package.select(None) == [5, 12] and package.select("5-12") == [5, 12] and package.select("12") == [12]
        with pytest.raises(FrameNotHeld, match="holds frames 5, 12"):
            package.select("6-11")


def test_predict_on_a_package_uses_its_frames_and_eval_pairs_them(cases_dir, tmp_path, capsys):
    package = cases_dir / "two_frames.pkg.slp"
    out = tmp_path / "out.slp"
    assert cli_main(["predict", "-m", MODEL, "-i", str(package), "-o", str(out)]) == 0
    assert "package" in capsys.readouterr().out  # it says which frames it used
    assert [f for _, f, _ in read_predictions(out).frames] == [5, 12]

    assert cli_main(["predict", "-m", MODEL, "-i", str(package), "-o", str(tmp_path / "x.slp"), "--frames", "6"]) == 2
    assert "holds frames 5, 12" in one_line_error(capsys)
    assert not (tmp_path / "x.slp").exists()
    assert cli_main(["predict", "-m", MODEL, "-i", str(package), "-o", str(tmp_path / "r.slp"),
                     "--frames", "5-12"]) == 0
    assert [f for _, f, _ in read_predictions(tmp_path / "r.slp").frames] == [5, 12]

    scores = tmp_path / "eval.json"
    assert cli_main(["eval", "-g", str(package), "-p", str(out), "--json", str(scores)]) == 0
    r = json.loads(scores.read_text())
    assert r["n_frames"] == 2 and r["n_gt"] == 4 and r["n_frames_gt_only"] == 0
    assert r["map"] is not None and r["map"] > 0.5  # the model was trained on these frames


# -- 2. nothing to score -------------------------------------------------------------------


def test_eval_that_pairs_no_frame_is_an_error_naming_both_videos(cases_dir, tmp_path, capsys):
    gt, pred = cases_dir / "labels_10frames.slp", cases_dir / "predictions_other_video.slp"
    for extra in ([], ["--unpredicted-frames", "missed"]):
        out = tmp_path / "m.json"
        assert cli_main(["eval", "-g", str(gt), "-p", str(pred), "--json", str(out), *extra]) == 2
        captured = capsys.readouterr()
        err = captured.err
        assert err.count("\n") == 1 and "nothing to score" in err, err
        assert "full20.avi" in err and "clip.mp4" in err and str(gt) in err and str(pred) in err
        assert "mAP" not in captured.out and not out.exists()


def test_undefined_figures_are_null_not_zero():
    ap, ar = metrics.voc(np.empty(0), np.empty(0), n_gt=0)  # nothing to find
    assert np.isnan(ap).all() and np.isnan(ar).all()
    assert to_json_safe({"map": float(ap.mean())}) == {"map": None}


# -- 3. containers whose frame count is an estimate ------------------------------------------


def test_a_stream_shorter_than_its_container_says_ends_where_it_ends(cases_dir):
    with VideoReader(cases_dir / "variable_rate.mkv") as reader:
        assert reader.n_frames == 125  # what the container declares
        images = []
        with pytest.raises(StreamEnded) as ended:
            for i in range(reader.n_frames):
                images.append(reader.read(i))
        assert len(images) == 40 and ended.value.frames_read == 40 and reader.ended_at == 40
        with pytest.raises(StreamEnded, match="holds 40 frames"):
            reader.read(90)  # known now: no decoding


def test_predict_reads_a_lying_container_to_its_real_end(cases_dir, tmp_path, capsys):
    video = cases_dir / "variable_rate.mkv"
    out = tmp_path / "all.slp"
    assert cli_main(["predict", "-m", MODEL, "-i", str(video), "-o", str(out)]) == 0  # a short video, all read
    err = capsys.readouterr().err
    assert "40" in err and "125" in err, err  # says what was read against what was declared
    assert [f for _, f, _ in read_predictions(out).frames] == list(range(40))
    # Frames asked for past the real end: those read are written, the rest listed, exit 3.
    out = tmp_path / "range.slp"
    assert cli_main(["predict", "-m", MODEL, "-i", str(video), "-o", str(out), "--frames", "30-60"]) == 3
    assert [f for _, f, _ in read_predictions(out).frames] == list(range(30, 40))
    assert load_labels(out).provenance["rtpose.frames_not_read"] == list(range(40, 61))


def run_replay(path: Path, fps: float, **overrides):
    sets = [f"camera.path={path}", f"camera.fps={fps}", "camera.loop=false", "publisher.enabled=false",
            "recorder.enabled=false"] + [f"{k}={v}" for k, v in overrides.items()]
    loaded = load_protocol(REPO / "experiments" / "replay_dry_run.yaml", sets)
    return Daemon(loaded).run()


def test_a_seek_past_the_real_end_finds_where_the_stream_ends(cases_dir):
    """A read that lands past the end by seeking (a replay skipping frames, a Ray chunk)
    finds the real end, not the frame it asked for."""
    video = cases_dir / "variable_rate.mkv"
    with VideoReader(video) as sequential:
        expected = [sequential.read(i) for i in range(40)]
    for far in (40, 64, 95, 124):
        with VideoReader(video) as reader:
            with pytest.raises(StreamEnded) as ended:
                reader.read(far)
            assert ended.value.frames_read == 40 and reader.ended_at == 40, far
            np.testing.assert_array_equal(reader.read(39), expected[39])  # still readable, after the search
            np.testing.assert_array_equal(reader.read(7), expected[7])


def test_a_replay_of_a_lying_container_plays_only_the_frames_it_holds(cases_dir):
    video = cases_dir / "variable_rate.mkv"
    with ReplayCamera(video, fps=400, buffer_frames=1000) as camera:
        assert camera.frame_indices == list(range(40)) and camera.stream_frames == 40
        assert "ends after 40 frames (0-39), not the 125 its container declares" in camera.stream_note
        used, seqs = [], []
        while (frame := camera.read(timeout_s=2.0)) is not None:
            used.append(frame.index)
            seqs.append(frame.seq)
            frame.image  # every frame handed over exists: none is lost
        assert used == list(range(40)) and seqs == list(range(40)) and camera.dropped == 0
    with ReplayCamera(video, fps=400, buffer_frames=1000, loop=True) as camera:  # loops at the real end
        played = [camera.read(timeout_s=2.0) for _ in range(90)]
        assert [f.index for f in played] == [i % 40 for i in range(90)]
        np.testing.assert_array_equal(played[80].image, played[0].image)
    with ReplayCamera(video, fps=400, frames="30-100") as camera:  # a range cut at the real end
        assert camera.frame_indices == list(range(30, 40))
    with pytest.raises(RtposeError, match="past the end of the stream"):
        ReplayCamera(video, fps=400, frames="60-100").open()


def test_rtpose_run_on_a_lying_container_counts_only_frames_that_exist(cases_dir, tmp_path, monkeypatch, capsys):
    """At 150 FPS on this CPU most frames are dropped; none of the counted ones lies past frame 39."""
    monkeypatch.chdir(REPO)
    summary_path, run_dir = tmp_path / "summary.json", tmp_path / "run"
    assert cli_main(["run", str(REPO / "experiments" / "replay_dry_run.yaml"), "--summary", str(summary_path),
                     "--set", f"camera.path={cases_dir / 'variable_rate.mkv'}", "--set", "camera.loop=false",
                     "--set", "publisher.enabled=false", "--set", f"recorder.path={run_dir}"]) == 0
    printed = " ".join(capsys.readouterr().out.replace("│", " ").split())  # the table's cells, unwrapped
    assert "source ended" in printed and "the source ended early: the stream ends after 40 frames" in printed, printed
    summary = json.loads(summary_path.read_text())
    frames = summary["frames"]
    assert summary["stop"]["reason"] == "source ended"
    assert summary["camera"]["note"].startswith("the stream ends after 40")
    assert frames["acquired"] == frames["processed"] + frames["dropped"] and frames["processed"] >= 1
    assert frames["acquired"] <= 40 and frames["dropped_by_reason"]["lost"] == 0, frames
    recording = read_recording(run_dir)
    assert recording.frame.max() < 40
    drops = [r for r in iter_records(run_dir / "record.msgpack") if r.get("type") == "drop"]
    assert all(d["seq"] + d.get("count", 1) <= 40 for d in drops), drops
    assert recording.end["camera"]["note"] == summary["camera"]["note"]


# -- the replay source is checked before anything opens ---------------------------------------


@pytest.mark.parametrize("source, says", [
    ("README.md", "not a readable video"),
    ("labels_10frames.slp", "has no embedded images"),
])
def test_rtpose_run_on_a_source_that_is_not_a_video_is_exit_2_before_the_banner(cases_dir, tmp_path, monkeypatch,
                                                                               capsys, source, says):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    assert cli_main(["run", "experiments/male_approach_replay.yaml", "--set", f"camera.path={cases_dir / source}",
                     "--set", f"recorder.path={run_dir}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # no banner: nothing opened
    err = one_line_error_text(captured.err)
    assert "male_approach_replay.yaml: camera.path" in err and str(cases_dir / source) in err and says in err, err
    assert not run_dir.exists()


def test_rtpose_run_on_frames_the_model_does_not_take_is_exit_2_before_the_banner(mice_path, tmp_path, monkeypatch,
                                                                                  capsys):
    """The 768x1024 mouse video with the 1024x1024 fly model of the demo protocol."""
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    video = mice_path.parent / "video.mp4"
    assert cli_main(["run", "experiments/male_approach_replay.yaml", "--set", f"camera.path={video}",
                     "--set", f"recorder.path={run_dir}"]) == 2
    captured = capsys.readouterr()
    err = one_line_error_text(captured.err)
    assert captured.out == "" and f"camera.path {video}: frames are 768x1024 but the model takes 1024x1024" in err, err
    assert "trained on frames of another shape" in err and "--frame-size" not in err and not run_dir.exists()


def test_a_replay_shorter_than_the_duration_is_said_at_the_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli_main(["run", "experiments/male_approach_replay.yaml", "--duration", "0.5", "--set", "camera.frames=0-30",
                     "--set", f"recorder.path={tmp_path / 'run'}", "--set", "publisher.enabled=false"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: the replay's 31 frames (as its file declares them) last 0.2 s at 150 FPS, less than the " \
           "duration 0.5 s" in out, out
    assert "camera.loop: true" in out


def test_rtpose_run_on_a_range_past_the_real_end_is_exit_2(cases_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli_main(["run", "experiments/male_approach_replay.yaml", "--set", "camera.frames=60-100",
                     "--set", f"camera.path={cases_dir / 'variable_rate.mkv'}",
                     "--set", f"recorder.path={tmp_path / 'run'}"]) == 2
    captured = capsys.readouterr()
    err = one_line_error_text(captured.err)
    assert captured.out == "" and "camera.frames" in err and "holds 40 frames" in err, err


# -- 4. nothing lost when decoding fails ------------------------------------------------------


def mjpeg_copy(flies_video_path: Path, path: Path, n: int = 30) -> bytes:
    """The first ``n`` frames of the fly clip as an MJPEG AVI (every frame its own JPEG)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1024, 1024), isColor=False)
    with VideoReader(flies_video_path) as reader:
        for i in range(n):
            writer.write(reader.read(i))
    writer.release()
    return path.read_bytes()


def jpeg_starts(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]


def test_an_undecodable_frame_loses_only_itself(flies_video_path, tmp_path, capsys):
    data = bytearray(mjpeg_copy(flies_video_path, tmp_path / "good.avi"))
    start = jpeg_starts(bytes(data))[12]
    data[start:start + 4000] = bytes(4000)  # frame 12's JPEG header and first scans wiped
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    with VideoReader(broken) as reader:
        with pytest.raises(FrameNotDecoded):
            for i in range(30):
                reader.read(i)
        assert i == 12
        reader.read(13)  # the next frame reads normally
    out = tmp_path / "out.slp"
    assert cli_main(["predict", "-m", MODEL, "-i", str(broken), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "1 frame(s) could not be decoded, the first 12" in err, err
    assert "1 frame(s) of the input have no poses" in err and "asked for" not in err, err  # no --frames given
    assert [f for _, f, _ in read_predictions(out).frames] == [i for i in range(30) if i != 12]
    assert load_labels(out).provenance["rtpose.frames_not_read"] == [12]


def test_a_truncated_file_is_a_shorter_video(flies_video_path, tmp_path, capsys):
    data = mjpeg_copy(flies_video_path, tmp_path / "good.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: jpeg_starts(data)[25] + 1000])  # the last frames do not decode
    out = tmp_path / "out.slp"
    assert cli_main(["predict", "-m", MODEL, "-i", str(cut), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the stream ends after 25 frames" in err and "predicted the 25 it holds" in err, err
    assert "asked for" not in err, err  # no --frames given: nothing asked for was lost
    assert [f for _, f, _ in read_predictions(out).frames] == list(range(25))
    assert cli_main(["predict", "-m", MODEL, "-i", str(cut), "-o", str(out), "--frames", "20-29",
                     "--overwrite"]) == 3
    err = capsys.readouterr().err
    assert "5 frame(s) asked for lie past its end" in err and "5 frame(s) asked for have no poses" in err, err
    assert [f for _, f, _ in read_predictions(out).frames] == list(range(20, 25))


# -- 6. a camera faster than the machine --------------------------------------------------------


def test_replay_decodes_only_the_frames_that_are_used(flies_video_path):
    with ReplayCamera(flies_video_path, fps=1000, frames="0-99", buffer_frames=1000) as camera:
        frames = []
        while (frame := camera.read(timeout_s=2.0)) is not None:
            frames.append(frame)
        used = frames[::10]
        with VideoReader(flies_video_path) as reader:
            for frame in used:
                np.testing.assert_array_equal(frame.image, reader.read(frame.index))
        assert [f.index for f in frames] == list(range(100)) and camera.decoded == len(used)  # the first: at open
    t = np.array([f.t_exposure for f in frames])
    np.testing.assert_allclose(np.diff(t), 1 / 1000, atol=1e-9)  # exposure times on the requested clock


def test_the_loop_keeps_running_when_the_camera_outpaces_it(flies_video_path, monkeypatch):
    monkeypatch.chdir(REPO)
    fps, seconds = 2000, 2.0
    result = run_replay(flies_video_path, fps, **{"camera.loop": "true", "duration": seconds})
    assert result.stop_reason == "duration" and result.error is None, (result.stop_reason, result.error)
    frames = result.summary["frames"]
    assert frames["acquired"] == frames["processed"] + frames["dropped"] and frames["processed"] >= 1
    assert frames["acquired"] >= 0.5 * fps * seconds  # the camera kept its rate: frames were dropped, not delayed


# -- 7. defaults that fit the input --------------------------------------------------------------


def test_bench_without_frames_times_what_a_short_video_holds(cases_dir, capsys):
    assert cli_main(["bench", "-m", MODEL, "-i", str(cases_dir / "three_frames.avi"), "--no-batch-sweep",
                     "--warmup", "1"]) == 0
    out = capsys.readouterr()
    assert "frames 0-2 (n=3)" in out.out
    # percentiles of 3 frames are said to be that (one line, still exit 0)
    warned = [line for line in out.err.splitlines() if "percentiles" in line]
    assert len(warned) == 1 and "only 3 timed frames" in warned[0] and "three_frames.avi" in warned[0]
    # it holds no more frames: --frames cannot help, and no throughput batch repeated them
    assert "time a longer input" in warned[0] and "--frames" not in warned[0] and "repeat" not in warned[0]


def test_bench_of_enough_frames_does_not_warn_about_its_percentiles(flies_video_path, capsys):
    from rtpose.engine.bench import MIN_FRAMES_FOR_PERCENTILES

    last = 1200 + MIN_FRAMES_FOR_PERCENTILES - 1
    assert cli_main(["bench", "-m", MODEL, "-i", str(flies_video_path), "--frames", f"1200-{last}",
                     "--no-batch-sweep", "--warmup", "1"]) == 0
    out = capsys.readouterr()
    assert f"(n={MIN_FRAMES_FOR_PERCENTILES})" in out.out and "percentiles" not in out.err


def test_a_misspelt_option_is_one_line_naming_its_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", "-m", "x", "-i", "y", "--framez", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == ("rtpose predict: error: unrecognized arguments: --framez 3; did you mean --frames? "
                   "(see rtpose predict --help)\n")
    with pytest.raises(SystemExit):  # no abbreviations: --frame is not --frames, but it is named
        cli_main(["predict", "-m", "x", "-i", "y", "--frame", "3"])
    assert "unrecognized arguments: --frame 3; did you mean --frames?" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # nothing close: no guess
        cli_main(["predict", "-m", "x", "-i", "y", "--zzz"])
    assert capsys.readouterr().err.endswith("unrecognized arguments: --zzz (see rtpose predict --help)\n")
    with pytest.raises(SystemExit):  # a misspelt command is named too
        cli_main(["prdict", "-m", "x"])
    assert capsys.readouterr().err == ("rtpose: error: unknown command 'prdict'; did you mean 'predict'? "
                                       "(see rtpose --help)\n")


def test_a_video_given_to_train_is_named_as_one(flies_video_path, capsys):
    assert cli_main(["train", str(flies_video_path), "--minutes", "1"]) == 2
    assert capsys.readouterr().err == (f"error: {flies_video_path}: is a video; rtpose train takes a labels file "
                                       "(.slp, labelled frames of it) or a config (.yaml)\n")


def test_a_file_ffmpeg_cannot_open_gives_rtposes_line_alone(flies_video_path, tmp_path):
    """FFmpeg's own log ("moov atom not found") no longer comes before rtpose's one line."""
    import subprocess
    import sys

    cut = tmp_path / "cut.mp4"  # the first 2 kB of the clip: no moov atom
    cut.write_bytes(flies_video_path.read_bytes()[:2000])
    run = subprocess.run([sys.executable, "-m", "rtpose", "predict", "-m", MODEL, "-i", str(cut), "-o",
                          str(tmp_path / "p.slp")], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"})
    assert run.returncode == 2 and run.stderr == f"error: {cut}: not a readable video\n", run.stderr


def test_bench_of_a_labels_file_names_the_video_it_timed(flies_video_path, capsys):
    close = flies_video_path.with_name("clip.close.slp")
    assert cli_main(["bench", "-m", MODEL, "-i", str(close), "--frames", "1200-1201", "--no-batch-sweep",
                     "--warmup", "0"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"model {MODEL}, frames 1200, 1201 of clip.mp4 (n=2)"), first



@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc, a folder that takes no new file")
@pytest.mark.parametrize("argv, option, target", [
    (["predict", "-m", MODEL, "-i", "VIDEO", "-o", "/proc/rtpose-x.slp"], "-o", "/proc/rtpose-x.slp"),
    (["predict", "-m", MODEL, "-i", "VIDEO", "CASE", "-o", "/proc/rtpose-x"], "-o", "/proc/rtpose-x"),
    (["bench", "-m", MODEL, "-i", "VIDEO", "--frames", "0-9", "--json", "/proc/rtpose-x.json"], "--json",
     "/proc/rtpose-x.json"),
    (["check", "-m", MODEL, "--json", "/proc/rtpose-x.json"], "--json", "/proc/rtpose-x.json"),
    (["export", str(REPO / "models" / "flies13"), "-o", "/proc/rtpose-x"], "-o", "/proc/rtpose-x"),
    (["train", "CASE", "-o", "/proc/rtpose-x", "--minutes", "0.2"], "-o", "/proc/rtpose-x"),
    (["listen", "-o", "/proc/sub/rtpose-x.msgpack", "--count", "1"], "-o", "/proc/sub/rtpose-x.msgpack"),
    (["recording", "TMP", "-o", "/proc/rtpose-x.slp"], "-o", "/proc/rtpose-x.slp"),
    (["run", str(REPO / "experiments" / "male_approach_replay.yaml"), "--duration", "2", "--summary",
      "/proc/rtpose-x.json"], "--summary", "/proc/rtpose-x.json"),
])
def test_an_output_where_no_file_can_be_made_is_refused_before_any_work(argv, option, target, flies_video_path,
                                                                         cases_dir, capsys, monkeypatch, tmp_path):
    """Permission bits say yes to root everywhere, and /proc passes them too, then takes no
    file: predict used to run all 1500 frames and lose them, bench, check, run and
    calibrate to do their work and end in a traceback. The folder is now tried first."""
    monkeypatch.chdir(tmp_path)  # rtpose run makes its recording folder under runs/ here
    given = {"VIDEO": str(flies_video_path), "CASE": str(cases_dir / "two_frames.pkg.slp"), "TMP": str(tmp_path)}
    argv = [given.get(a, a) for a in argv]
    assert cli_main(argv) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: {option} {target}: cannot write (no file can be made in /proc: "), err
    assert not (tmp_path / "runs").exists()  # the experiment never started
