"""``rtpose predict`` over several videos on a local Ray (2 workers): the same poses as one
process, frame by frame; a video that stops decoding part-way and one that does not open
are reported while the others complete; an interrupted or killed run resumes without
redoing finished chunks; a killed worker is replaced.

Test videos are short re-encodings of the fly clip in close courtship (frames 1390 on),
where identity continuity takes over most frames, so chunk borders fall inside followed
stretches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio
import ray  # the fleet extra: part of what `make test` installs; missing -> these tests fail

from rtpose.cli import main as cli
from rtpose.data.predictions import read_predictions
from rtpose.data.video import VideoReader
from rtpose.engine.base import load_engine
from rtpose.engine.continuity import IdentityContinuity
from rtpose.engine.frames import DecodeReport
from rtpose.engine.predict import predict, predict_frames
from rtpose.errors import RtposeError
from rtpose.fleet import init_local_ray
from rtpose.fleet.inputs import expand_inputs, output_paths, use_fleet
from rtpose.fleet.plan import plan_chunks, size_workers
from rtpose.paths import REPO_ROOT, data_dir


SHIPPED = REPO_ROOT / "models" / "flies13"
FIRST = 1390  # close courtship: the identity head is undecided on most of these frames
BAD_FRAME = 12  # of c.avi
RESUMED = ("a", "b", "e")  # the videos of the interrupted runs
# One graph for both paths: with "auto" each engine picks int8 or fp32 by timing them on
# its machine and thread count, which need not agree between one process and a worker.
PRECISION = "fp32"
DEADLINE_S = 240.0


def _write(path: Path, fourcc: str, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 150.0, frames[0].shape[::-1],
                             isColor=False)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _zero_frame(path: Path, index: int) -> None:
    """Overwrite the JPEG data of frame ``index`` of an MJPEG .avi with zeros (RIFF chunks
    of the ``movi`` list), so that frame does not decode and the others still do."""
    data = bytearray(path.read_bytes())
    pos, frame = data.find(b"movi") + 4, 0
    while pos + 8 <= len(data):
        chunk, size = bytes(data[pos:pos + 4]), int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk.endswith(b"dc"):
            if frame == index:
                data[pos + 8:pos + 8 + size] = bytes(size)
                path.write_bytes(bytes(data))
                return
            frame += 1
        pos += 8 + size + (size & 1)
    raise AssertionError(f"{path} has no frame {index}")


@pytest.fixture(scope="module")
def videos(tmp_path_factory, flies_video_path) -> dict[str, Path]:
    """Short videos of the fly clip: two that read (MJPEG .avi, MPEG-4 .mp4), one with an
    undecodable frame in the middle, one cut off at 60% of its bytes (the stream ends
    before its container says), one cut off before its index (does not open), and the
    shared case whose container declares 125 frames for 40."""
    folder = tmp_path_factory.mktemp("videos")
    with VideoReader(flies_video_path) as reader:
        frames = [reader.read(i) for i in range(FIRST, FIRST + 36)]
    a = _write(folder / "a.avi", "MJPG", frames)
    b = _write(folder / "b.mp4", "mp4v", frames[4:36])
    c = _write(folder / "c.avi", "MJPG", frames[:30])
    _zero_frame(c, BAD_FRAME)
    full = _write(folder / "full_e.avi", "MJPG", frames[:30])
    e = folder / "e.avi"
    e.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    full.unlink()
    d = folder / "d.mp4"
    d.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "mkv": _need_case("variable_rate.mkv")}


def _need_case(name: str) -> Path:
    path = data_dir().parent / "cases" / name
    if not path.exists():
        pytest.fail(f"test data missing: {path} (the shared cases beside RTPOSE_DATA)")
    return path


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (start-up takes seconds): 2 CPUs, so 2 workers."""
    init_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _followed(video: Path, engine) -> list[int]:
    """Frames of ``video`` whose identities identity continuity took over, in one process."""
    follow = IdentityContinuity(engine.spec.n_classes)
    followed = []
    for i, poses in predict_frames(engine, video, range(VideoReader(video).n_frames), report=DecodeReport()):
        before = follow.followed
        follow(poses, i)
        if follow.followed > before:
            followed.append(i)
    return followed


def _assert_same_file(path: Path, reference: Path) -> None:
    """Same frames, poses, scores and identities, frame by frame, and the same provenance."""
    got, expected = read_predictions(path).frames, read_predictions(reference).frames
    assert [f for _, f, _ in got] == [f for _, f, _ in expected]
    for (_, frame, g), (_, _, e) in zip(got, expected):
        assert np.array_equal(g.identity, e.identity), frame
        assert np.array_equal(g.points, e.points, equal_nan=True), frame
        assert np.array_equal(g.point_scores, e.point_scores), frame
        assert np.array_equal(g.instance_scores, e.instance_scores), frame
        assert np.array_equal(g.identity_scores, e.identity_scores, equal_nan=True), frame
    assert _provenance(path) == _provenance(reference)


def _provenance(path: Path) -> dict:
    return {k: v for k, v in sio.load_slp(str(path), open_videos=False).provenance.items() if k.startswith("rtpose.")}


@pytest.fixture(scope="module")
def references(tmp_path_factory, videos) -> dict[str, Path]:
    """Today's single-process ``predict`` of every readable video (1 ONNX Runtime thread,
    as the workers here)."""
    folder = tmp_path_factory.mktemp("single")
    return {k: predict(SHIPPED, v, output=folder / f"{k}.slp", progress=False, precision=PRECISION)
            for k, v in videos.items() if k != "d"}


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# `rtpose ...` in a child process whose Ctrl-C raises KeyboardInterrupt even where this
# process ignores SIGINT (a background job of a non-interactive shell does, and children inherit it)
RTPOSE = [sys.executable, "-c", ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                 "sys.argv[0] = 'rtpose'; runpy.run_module('rtpose', run_name='__main__')")]


def _command(videos, out: Path, address: str, chunk_frames: int) -> list[str]:
    return [*RTPOSE, "predict", "-m", str(SHIPPED), "-i",
            *(str(videos[k]) for k in RESUMED), "-o", str(out), "--workers", "2",
            "--chunk-frames", str(chunk_frames), "--ray", address, f"--{PRECISION}"]


def _wait_for_chunks(out: Path, proc: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        try:
            done = sum(c["status"] == "done" for v in _manifest(out)["videos"].values()
                       for c in v.get("chunks", {}).values())
        except (OSError, ValueError):
            done = 0
        if done >= at_least:
            return
        time.sleep(0.02)
    pytest.fail(f"no {at_least} chunks done within {DEADLINE_S} s")


# --- on Ray --------------------------------------------------------------------------------


def test_fleet_matches_one_process_and_reports_broken_videos(tmp_path, videos, references, ray_address, capsys):
    from rtpose.fleet.run import EXIT_INCOMPLETE, run_fleet

    out = tmp_path / "out"
    chunk = 7
    names = ["a", "b", "c", "d", "e", "mkv"]
    result = run_fleet(SHIPPED, [str(videos[k]) for k in names], out, workers=2, chunk_frames=chunk,
                       precision=PRECISION)
    assert result.exit_status == EXIT_INCOMPLETE == 3
    manifest = _manifest(out)
    entries = {k: manifest["videos"][str(videos[k].resolve())] for k in names}
    run = manifest["runs"][-1]
    assert run["status"] == "complete" and run["workers"] == 2 and run["threads"] == 1

    # every readable video: what today's single-process `predict` writes, frame by frame
    for k in ["a", "b", "c", "e", "mkv"]:
        _assert_same_file(out / f"{videos[k].stem}.predictions.slp", references[k])
        e = entries[k]
        assert e["frames"] == len(read_predictions(references[k]).frames) > 0
        assert e["engine"] == "ort-cpu" and e["fps"] > 0 and e["machines"] and e["video_fps"] > 0
        assert e["graphs"] == [PRECISION]
    engine = load_engine(SHIPPED, "ort-cpu", PRECISION, threads=1)
    for k in "ab":
        assert entries[k]["status"] == "done" and entries[k]["frames_not_read"] == 0 and not entries[k]["notes"]
        # continuity carried its state across chunk borders: frames that open a chunk were followed
        starts = {c.indices[0] for c in plan_chunks(0, range(entries[k]["frames"]), chunk)} - {0}
        assert starts & set(_followed(videos[k], engine)), k

    # c: one frame in the middle does not decode: the others are written, that one reported
    c = entries["c"]
    assert c["status"] == "partial" and c["frames"] == 29 and c["first_not_read"] == BAD_FRAME
    assert c["frames_not_read"] == 1 and _provenance(out / "c.predictions.slp")["rtpose.frames_not_read"] == [12]
    # read on sequentially from the chunk with the broken frame (seeks past it are not trusted)
    assert c["sequential_from"] == BAD_FRAME // chunk * chunk and len(c["chunks"]) == 2
    # e and the .mkv end before their containers say: shorter videos, noted, complete
    for k in ("e", "mkv"):
        assert entries[k]["status"] == "done" and entries[k]["frames_not_read"] == 0
        assert entries[k]["stream_frames"] == entries[k]["frames"] and "the stream ends after" in entries[k]["notes"][0]
    assert entries["mkv"]["frames"] == 40
    # d does not open: reported, nothing written, the others went on
    assert entries["d"]["status"] == "failed" and "not a readable video" in entries["d"]["error"]
    assert not (out / "d.predictions.slp").exists()
    assert not (out / ".rtpose-chunks").exists()
    table = capsys.readouterr().out
    assert "partial" in table and "failed" in table and "frames/s" in table


def test_fleet_on_a_lying_container_agrees_with_one_process(tmp_path, videos, ray_address, capsys):
    """The .mkv declares 125 frames and holds 40: without --frames nothing asked for is
    lost (no "asked for" warning, exit 0), and the last line counts the 40 frames read."""
    from rtpose.fleet.run import EXIT_INCOMPLETE, run_fleet

    mkv = videos["mkv"]
    earlier = tmp_path / "all" / f"{mkv.stem}.predictions.slp"  # not this run's: replaced only with overwrite
    earlier.parent.mkdir()
    earlier.write_bytes(b"an earlier run's poses")
    with pytest.raises(RtposeError, match="already exists: give another -o, or --overwrite"):
        run_fleet(SHIPPED, [str(mkv)], tmp_path / "all", workers=2, chunk_frames=64, precision=PRECISION)
    result = run_fleet(SHIPPED, [str(mkv)], tmp_path / "all", workers=2, chunk_frames=64, precision=PRECISION,
                       overwrite=True)
    assert read_predictions(earlier).frames
    entry = result.manifest["videos"][str(mkv.resolve())]
    run = result.manifest["runs"][-1]
    assert result.exit_status == 0 and entry["status"] == "done" and entry["frames"] == 40
    assert entry["notes"] == ["the stream ends after 40 frames (0-39), not the 125 its container declares: "
                              "predicted the 40 it holds"], entry["notes"]
    assert run["chunks_predicted"] == 2 and run["frames_predicted"] == 40
    printed = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "40 frames in 2 chunks" in printed and "asked for" not in printed, printed
    # with a range the frames past the real end were asked for: listed, exit 3, as in one process
    result = run_fleet(SHIPPED, [str(mkv)], tmp_path / "range", frames="30-60", workers=2, chunk_frames=16,
                       precision=PRECISION)
    entry = result.manifest["videos"][str(mkv.resolve())]
    assert result.exit_status == EXIT_INCOMPLETE and entry["status"] == "partial" and entry["frames"] == 10
    assert "21 frame(s) asked for lie past its end" in entry["notes"][0]
    assert result.manifest["runs"][-1]["frames_predicted"] == 10


def _other_size(folder: Path, frames: list[np.ndarray], name: str, box: tuple[int, int]) -> Path:
    """An MJPEG .avi of ``frames`` cut to ``box`` (height, width): a size the fly model refuses."""
    h, w = box
    return _write(folder / name, "MJPG", [np.ascontiguousarray(f[:h, :w]) for f in frames])


def test_when_every_input_fails_the_last_line_says_so_and_the_exit_status_is_2(tmp_path, videos, ray_address, capsys,
                                                                                  monkeypatch):
    """Inputs the model refuses (frames of another size) are each marked failed; the last
    line says that every input failed and why the first did (not that an earlier run did
    the work), exit 2 as one-process predict on such an input. With an input an earlier
    run finished, the line counts both and the exit status is 3 (the rest is written)."""
    with VideoReader(videos["a"]) as reader:
        frames = [reader.read(i) for i in range(4)]
    folder = tmp_path / "session"  # given as a folder, with the labels file of one video in it
    folder.mkdir()
    roi = _other_size(folder, frames, "roi.avi", (896, 1000))  # a camera ROI a stride smaller than 1024x1024
    wide = _other_size(folder, frames, "wide.avi", (576, 1024))  # another shape: another setup
    (folder / "roi.slp").write_bytes(b"")
    out = tmp_path / "out"
    argv = ["predict", "-m", str(SHIPPED), "-o", str(out), "--fp32", "--workers", "1"]
    monkeypatch.delenv("COLUMNS", raising=False)
    assert cli([*argv, "-i", str(folder)]) == 2
    printed, said = capsys.readouterr()
    assert said.startswith(f"note: {folder}: left out 1 .slp without frames (labels or predictions; their video is "
                           "the input): roi.slp\n"), said
    # off a terminal the table is not folded into 80 columns (its reasons would take a dozen lines each)
    table = [line for line in printed.splitlines() if line.startswith("│")]
    assert table and max(len(line) for line in table) > 120 and len(table) <= 12, printed
    last = [line for line in printed.splitlines() if line.strip()][-2]  # before "manifest: ..."
    assert last.startswith(f"nothing predicted: every input failed (2 failed; first: {roi.resolve()}: frames are "
                           "896x1000 but the model takes 1024x1024"), printed
    assert "earlier run" not in printed and not list(out.glob("*.slp"))
    manifest = _manifest(out)
    assert [manifest["videos"][str(p.resolve())]["status"] for p in (roi, wide)] == ["failed", "failed"]

    assert cli([*argv, "-i", str(videos["a"]), "--frames", "0-3"]) == 0  # on Ray: a.avi done
    capsys.readouterr()
    assert cli([*argv, "-i", str(videos["a"]), str(wide), "--frames", "0-3"]) == 3
    last = [line for line in capsys.readouterr().out.splitlines() if line.strip()][-2]
    assert last.startswith(f"nothing predicted: 1 failed (first: {wide.resolve()}: frames are 576x1024 but the "
                           "model takes 1024x1024") and last.endswith("), 1 done by an earlier run"), last


def test_interrupted_and_killed_runs_resume_without_redoing_chunks(tmp_path, videos, references, ray_address):
    out = tmp_path / "out"
    cmd = _command(videos, out, ray_address, chunk_frames=4)
    n_chunks = sum(len(plan_chunks(0, range(n), 4)) for n in (36, 32, 30))

    # Ctrl-C: the run saves the manifest and exits 130
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_chunks(out, proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, err
    assert _manifest(out)["runs"][0]["status"] == "interrupted"
    # the video under way says so too (it said "running" after the run had ended)
    statuses = [v["status"] for v in _manifest(out)["videos"].values()]
    assert "running" not in statuses and "interrupted" in statuses, statuses
    assert "run the same command again to resume" in err

    # SIGKILL of the driver, no chance to clean up
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    already = sum(c["status"] == "done" for v in _manifest(out)["videos"].values() for c in v["chunks"].values())
    _wait_for_chunks(out, proc, already + 1)
    proc.kill()
    proc.wait(timeout=DEADLINE_S)

    before = _manifest(out)
    done_before = {(k, name) for k, v in before["videos"].items() for name, c in v["chunks"].items()
                   if c["status"] == "done"}
    on_disk = {(k, p.stem) for k, v in before["videos"].items()
               for p in Path(v["chunk_dir"]).glob("*.npz")} if (out / ".rtpose-chunks").exists() else set()
    finished_videos = {k for k, v in before["videos"].items() if v["status"] in ("done", "partial")}
    kept = done_before | on_disk
    assert 0 < len(kept) < n_chunks, "the kills came too late to leave unfinished chunks"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr
    after = _manifest(out)
    third = after["runs"][-1]
    assert [r["status"] for r in after["runs"]] == ["interrupted", "died", "complete"]
    for k, name in kept:
        assert after["videos"][k]["chunks"][name]["run"] in (1, 2, None), (k, name)
    redone = {(k, name) for k, v in after["videos"].items() for name, c in v["chunks"].items() if c["run"] == 3}
    assert not redone & kept
    assert third["chunks_predicted"] == n_chunks - len(kept) == len(redone)
    assert not finished_videos & {k for k, _ in redone}
    for k in RESUMED:
        _assert_same_file(out / f"{k}.predictions.slp", references[k])

    # once more: nothing left, nothing rewritten, Ray not even needed
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.slp")}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S)
    assert again.returncode == 0 and "nothing predicted" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.slp")} == mtimes
    assert _manifest(out)["runs"][-1]["chunks_predicted"] == 0


def test_a_killed_worker_is_replaced(tmp_path, videos, references, ray_address):
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(videos, out, ray_address, chunk_frames=4), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_chunks(out, proc, 1)
    pid = next(c["pid"] for v in _manifest(out)["videos"].values() for c in v["chunks"].values() if "pid" in c)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    manifest = _manifest(out)
    pids = {c["pid"] for v in manifest["videos"].values() for c in v["chunks"].values()}
    assert pid in pids and len(pids) >= 3  # chunks done by the killed worker, its replacement and the other
    for k in RESUMED:
        _assert_same_file(out / f"{k}.predictions.slp", references[k])


# --- without Ray ---------------------------------------------------------------------------


def test_without_ray_the_error_names_the_extra(tmp_path, videos, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(videos["a"]), str(videos["b"]), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rtpose[fleet]" in err
    # one input is today's predict, Ray or not
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(videos["a"]), "--frames", "0-1",
                "-o", str(tmp_path / "one.slp")]) == 0
    assert [f for _, f, _ in read_predictions(tmp_path / "one.slp").frames] == [0, 1]


def test_outputs_that_are_not_this_runs_work_are_refused_before_ray_unless_overwrite(tmp_path, videos, capsys):
    """.slp files in the output folder that this run would replace (made by another run
    with other settings, or by anything else) are refused in one line naming them and
    --overwrite, exit 2, before Ray starts: the files are untouched, no manifest is written."""
    out = tmp_path / "out"
    out.mkdir()
    a = out / "a.predictions.slp"
    a.write_bytes(b"kept")
    argv = ["predict", "-m", str(SHIPPED), "-i", str(videos["a"]), str(videos["b"]), "-o", str(out)]
    started = ray.is_initialized()
    assert cli(argv) == 2
    assert capsys.readouterr().err == f"error: {a} already exists: give another -o, or --overwrite to replace it\n"
    (out / "b.predictions.slp").write_bytes(b"kept too")
    assert cli(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: {out} already holds 2 of this run's outputs (a.predictions.slp, "
                                               "b.predictions.slp), from other settings or another run: give "
                                               "another -o, or --overwrite to replace them")
    assert a.read_bytes() == b"kept" and (out / "b.predictions.slp").read_bytes() == b"kept too"
    assert not (out / "manifest.json").exists() and ray.is_initialized() == started


def test_an_output_that_cannot_be_the_folder_of_several_inputs_is_refused_before_ray(tmp_path, videos, capsys):
    """-o x.slp with a folder input would make a folder named x.slp; -o an existing file cannot
    hold one .slp per video: one line each, exit 2, nothing made."""
    folder = str(videos["a"].parent)
    started = ray.is_initialized()
    assert cli(["predict", "-m", str(SHIPPED), "-i", folder, "-o", str(tmp_path / "x.slp")]) == 2
    assert capsys.readouterr().err == (f"error: -o {tmp_path / 'x.slp'}: with a folder, a pattern or a Ray option, -o "
                                       f"names a folder that gets one .slp per video (e.g. -o {tmp_path / 'x'}); "
                                       "for one .slp, give one video\n")
    taken = tmp_path / "taken"
    taken.write_bytes(b"kept")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(videos["a"]), str(videos["b"]), "-o", str(taken)]) == 2
    assert capsys.readouterr().err == (f"error: -o {taken}: is a file; with 2 inputs, -o names the folder that gets "
                                       "one .slp per video\n")
    assert not (tmp_path / "x.slp").exists() and taken.read_bytes() == b"kept" and ray.is_initialized() == started


def test_inputs_folders_patterns_and_outputs(tmp_path, videos):
    folder = videos["a"].parent
    assert expand_inputs([str(folder)]) == sorted(p.resolve() for p in folder.iterdir())
    assert expand_inputs([str(folder / "*.avi"), str(videos["a"])]) == [videos[k].resolve() for k in "ace"]
    with pytest.raises(RtposeError, match="no file matches"):
        expand_inputs([str(folder / "*.mov")])
    with pytest.raises(RtposeError, match="no such file or folder"):
        expand_inputs([str(folder / "missing.mp4")])
    with pytest.raises(RtposeError, match="holds no video"):
        expand_inputs([str(tmp_path)])
    packages = tmp_path / "packages"  # SLEAP packages in a folder are inputs; a labels .slp is not
    packages.mkdir()
    (packages / "session1.pkg.slp").write_bytes(b"")
    (packages / "labels.slp").write_bytes(b"")
    notes: list[str] = []
    assert expand_inputs([str(packages)], notes) == [(packages / "session1.pkg.slp").resolve()]
    assert notes == [f"{packages}: left out 1 .slp without frames (labels or predictions; their video is the "
                     "input): labels.slp"]
    (packages / "session1.pkg.slp").unlink()
    with pytest.raises(RtposeError, match=r"holds no video .* \(1 \.slp without frames: labels\.slp\)$"):
        expand_inputs([str(packages)])
    (tmp_path / "x").mkdir()
    other = tmp_path / "x" / "a.avi"
    other.write_bytes(b"")
    with pytest.raises(RtposeError, match="would both write"):
        output_paths([videos["a"], other], tmp_path / "out")
    assert use_fleet([str(videos["a"])], None, None, None) is False
    assert use_fleet([str(videos["a"])], 2, None, None) is True
    assert use_fleet([str(folder)], None, None, None) is True
    assert use_fleet([str(folder / "*.avi")], None, None, None) is True


def test_inputs_given_with_one_i_or_with_one_each_are_all_kept():
    """``-i A B`` and ``-i A -i B`` name the same two inputs: a second ``-i`` used to
    replace the first without a word, so one video was predicted instead of two."""
    from rtpose.cli import build_parser

    for argv in (["-i", "a.mp4", "b.mp4"], ["-i", "a.mp4", "-i", "b.mp4"], ["-i", "a.mp4", "-i", "b.mp4", "c.mp4"]):
        args = build_parser().parse_args(["predict", "-m", "model", *argv])
        assert args.input == [a for a in argv if a != "-i"], argv


def test_workers_and_threads_fit_the_cores():
    assert size_workers([2], n_chunks=10) == (2, 1)
    assert size_workers([16], n_chunks=3) == (3, 5)
    assert size_workers([8, 8], n_chunks=100, workers=3) == (3, 4)  # 2 on one node, 1 on the other
    assert size_workers([8, 4], n_chunks=100, workers=2) == (2, 4)
    with pytest.raises(RtposeError, match="at most 2 workers"):
        size_workers([2], n_chunks=10, workers=3)
    with pytest.raises(RtposeError, match="do not fit"):
        size_workers([2], n_chunks=10, workers=2, threads=2)
    chunks = plan_chunks(0, list(range(10, 30)), 7)
    assert [c.indices[0] for c in chunks] == [10, 17, 24] and sum(map(len, chunks)) == 20
