"""Engines, `rtpose predict` and `rtpose bench` on the shipped model and real frames."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import attrs
import numpy as np
import pytest
import sleap_io as sio

from rtpose.cli import main as cli
from rtpose.data.predictions import read_predictions
from rtpose.data.video import VideoReader
from rtpose.engine import base
from rtpose.engine.base import assign_identities, load_engine, prepare_frame, raw_to_poses, training_run
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.paths import data_dir

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "flies13"


def _need_data(relative: str) -> Path:
    path = data_dir() / relative
    if not path.exists():
        pytest.fail(f"test data missing: {path}")
    return path


@pytest.fixture(scope="module")
def engine():
    return load_engine(SHIPPED, "ort-cpu")


@pytest.fixture(scope="module")
def frame(flies_video_path):
    with VideoReader(flies_video_path) as r:
        return r.read(1250)


def test_infer_returns_the_poses_contract(engine, frame):
    poses = engine.infer(frame)
    spec = engine.spec
    n = len(poses)
    assert 1 <= n <= spec.max_instances
    assert poses.points.shape == (n, spec.n_nodes, 2) and poses.points.dtype == np.float32
    assert poses.point_scores.shape == (n, spec.n_nodes)
    assert poses.instance_scores.shape == (n,) and poses.identity.shape == (n,)
    assert poses.identity_scores.shape == (n, spec.n_classes)
    assert np.allclose(poses.identity_scores.sum(axis=1), 1.0, atol=1e-4)
    assert sorted(poses.identity.tolist()) == list(range(n))  # one instance per class
    found = np.isfinite(poses.points).all(axis=-1)
    assert (poses.point_scores[~found] < spec.point_threshold).all()
    assert ((poses.points[found] >= -1) & (poses.points[found] <= 1024)).all()


def test_colour_and_channel_frames_give_the_same_poses(engine, frame):
    grey = engine.infer(frame)
    bgr = engine.infer(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    single = engine.infer(frame[:, :, None])
    for other in (bgr, single):
        assert np.allclose(np.nan_to_num(grey.points), np.nan_to_num(other.points), atol=1e-3)


def test_batch_and_single_agree(engine, frame, flies_video_path):
    with VideoReader(flies_video_path) as r:
        other = r.read(1300)
    batch = engine.infer_batch([frame, other])
    for single, batched in zip((engine.infer(frame), engine.infer(other)), batch):
        assert np.allclose(np.nan_to_num(single.points), np.nan_to_num(batched.points), atol=1e-2)


def test_frame_size_is_padded_within_the_graphs_own_padding_or_refused(engine, tmp_path, monkeypatch):
    """The graph pads frames to a multiple of centroid max stride / input scale; frames
    that pad to the same size are padded, any other size is refused (larger or smaller)."""
    spec = engine.spec
    unet = spec.architecture["centroid"]["unet"]
    m = round(unet["stem_stride"] * 2 ** unet["down_blocks"] / spec.input_scale)
    assert spec.frame_multiple == m > 1
    H, W = spec.frame_height, spec.frame_width
    for h, w in [(H - 24, W - 8), (H - m + 1, W - m + 1)]:
        padded = prepare_frame(np.full((h, w), 7, np.uint8), spec)
        assert padded.shape == (H, W) and (padded[:h, :w] == 7).all() and not padded[h:].any()
    # a camera ROI a stride smaller, or the same view at twice the resolution: a re-export
    # for that size may help, from the model's training run where that exists here (named
    # absolute, so the command runs from any folder)
    run = tmp_path / "runs" / "flies13"
    run.mkdir(parents=True)
    here = attrs.evolve(spec, source={**spec.source, "dir": str(run)})
    for h, w in [(H - m, W), (H, W - m), (2 * H, 2 * W)]:
        with pytest.raises(RtposeError, match=rf"frames are {h}x{w} but the model takes {H}x{W}.*"
                                              rf"re-export it for them \(rtpose export {run} -o DIR "
                                              rf"--frame-size {h}x{w}.*; else use frames of {H}x{W} or a model "
                                              "trained on these frames$"):
            prepare_frame(np.zeros((h, w), np.uint8), here)
    # where it is not (a fresh clone holds no runs/: the shipped model records its run
    # relative to the repository), the advice says so and how to get one: no command that
    # would fail on a folder that is not there
    clone = tmp_path / "fresh-clone"  # the repository the relative path is read against
    monkeypatch.setattr(base, "REPO_ROOT", clone)
    gone = tmp_path / "elsewhere" / "run"
    for source, says in [({**spec.source, "dir": "runs/flies13"}, "`make model` retrains it there"),
                         ({**spec.source, "dir": str(gone)}, "copy it here or train one")]:
        missing = training_run(source)
        assert missing in (clone / "runs" / "flies13", gone)
        with pytest.raises(RtposeError) as info:
            prepare_frame(np.zeros((H - m, W), np.uint8), attrs.evolve(spec, source=source))
        msg = str(info.value)
        assert f"that run ({missing}) is not on this machine" in msg and says in msg, msg
        assert f"rtpose export {source['dir']} " not in msg and f"else use frames of {H}x{W}" in msg
    # another aspect ratio (4:3, 16:9 against 1:1): another setup, where a re-export would not help
    for h, w in [(768, 1024), (1080, 1920)]:
        with pytest.raises(RtposeError, match=rf"frames are {h}x{w} but the model takes {H}x{W}: it was trained on "
                                              "frames of another shape") as info:
            prepare_frame(np.zeros((h, w), np.uint8), spec)
        assert "--frame-size" not in str(info.value) and "re-export" not in str(info.value)
    with pytest.raises(RtposeError, match="channels"):
        prepare_frame(np.zeros((1024, 1024, 2), np.uint8), spec)
    # an imported sleap-nn model is not re-exported at another size (rtpose export refuses it)
    imported = attrs.evolve(spec, source={"format": "sleap-nn"})
    with pytest.raises(RtposeError, match="trained at .* only: use frames of that size") as info:
        prepare_frame(np.zeros((H - m, W), np.uint8), imported)
    assert "--frame-size" not in str(info.value)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_predict_refuses_another_setups_video_naming_it_and_both_sizes(tmp_path, capsys):
    """The 768x1024 mouse video into the 1024x1024 fly model: one line, exit 2, nothing written."""
    mice_video = _need_data("mice2/video.mp4")
    out = tmp_path / "p.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(mice_video), "--frames", "70-75", "-o", str(out)]) == 2
    msg = _one_error_line(capsys)
    assert msg == (f"error: {mice_video}: frames are 768x1024 but the model takes 1024x1024: it was trained on "
                   "frames of another shape (another setup); use a model trained on these frames (rtpose train "
                   "LABELS.slp makes one)")
    assert not out.exists()


def test_predict_refuses_labels_of_another_skeleton(tmp_path, mice_path, minimal_labels_path, capsys):
    """The 15-node mouse labels (and the 2-node minimal package) into the 13-node fly model."""
    labels_nodes = [n.name for n in sio.load_slp(str(mice_path), open_videos=False).skeletons[0].nodes]
    first = next(n for n in labels_nodes if n not in ExportSpec.load(SHIPPED).node_names)
    out = tmp_path / "p.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(mice_path), "--only-labeled", "-o", str(out)]) == 2
    msg = _one_error_line(capsys)
    assert msg.startswith(f"error: {mice_path}: the labels' skeleton ({len(labels_nodes)} nodes) is not the "
                          "model's (13 nodes")
    assert f"its node {first!r} is not a node of the model" in msg and not out.exists()
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(minimal_labels_path), "-o", str(out)]) == 2
    msg = _one_error_line(capsys)
    assert str(minimal_labels_path) in msg and "skeleton (2 nodes)" in msg and not out.exists()


def test_labels_of_the_models_skeleton_in_another_order_are_taken(tmp_path, flies_labels_path):
    """The skeleton check compares node names, not their order."""
    from rtpose.engine.frames import check_skeleton

    spec = ExportSpec.load(SHIPPED)
    check_skeleton(list(reversed(spec.node_names)), spec, "x.slp")
    with pytest.raises(RtposeError, match=r"x.slp: .* it lacks the model's node 'eyeR'"):
        check_skeleton(spec.node_names[:-1], spec, "x.slp")


def test_identity_assignment_is_one_per_class():
    probs = np.array([[0.6, 0.4], [0.9, 0.1]])  # both prefer class 0; the joint optimum splits them
    assert assign_identities(probs).tolist() == [1, 0]
    three = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    ids = assign_identities(three)
    assert sorted(ids.tolist()) == [-1, 0, 1] and ids[1] == 0 and ids[2] == 1
    assert assign_identities(np.zeros((0, 2))).shape == (0,)


def test_raw_outputs_below_threshold_become_nan(engine):
    spec = engine.spec
    raw = {"points": np.ones((1, 2, spec.n_nodes, 2), np.float32),
           "point_scores": np.full((1, 2, spec.n_nodes), 0.9, np.float32),
           "instance_scores": np.array([[0.8, 0.1]], np.float32),
           "class_probs": np.full((1, 2, spec.n_classes), 0.5, np.float32),
           "valid": np.array([[True, False]])}
    raw["point_scores"][0, 0, 3] = spec.point_threshold / 2
    poses = raw_to_poses(raw, 0, spec)
    assert len(poses) == 1 and np.isnan(poses.points[0, 3]).all() and np.isfinite(poses.points[0, 2]).all()


def test_export_dir_errors(tmp_path):
    with pytest.raises(RtposeError, match="nope: no such export directory"):
        ExportSpec.load(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(RtposeError, match="not an export directory"):
        ExportSpec.load(tmp_path / "file")
    with pytest.raises(RtposeError, match=r"model.onnx: not an export directory \(a file; the export is its "
                                          r"folder: -m .*models/flies13\)"):
        ExportSpec.load(SHIPPED / "model.onnx")
    run = tmp_path / "run"  # a training run, not its export: the command that makes one
    run.mkdir()
    (run / "model.json").write_text("{}")
    with pytest.raises(RtposeError, match=rf"run: missing rtpose.json \(it holds a trained model, not its export: "
                                          rf"rtpose export {run} -o {run}.export\)"):
        ExportSpec.load(run)
    spaced = tmp_path / "my run"  # the suggested command is one a shell runs as it reads: quoted
    spaced.mkdir()
    (spaced / "model.json").write_text("{}")
    with pytest.raises(RtposeError, match=re.escape(f"rtpose export '{spaced}' -o '{spaced}.export')")):
        ExportSpec.load(spaced)
    peer = tmp_path / "peer"  # sleap-nn's two networks: the two-directory form
    for net in ("centroid", "centered_instance"):
        (peer / net).mkdir(parents=True)
        (peer / net / "best.ckpt").write_bytes(b"")
    with pytest.raises(RtposeError, match=rf"it holds trained SLEAP networks, not an export: rtpose export "
                                          rf"{peer / 'centered_instance'} {peer / 'centroid'} -o EXPORT_DIR"):
        ExportSpec.load(peer)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(SHIPPED / "rtpose.json", partial)
    with pytest.raises(RtposeError, match="missing model.onnx"):
        ExportSpec.load(partial)
    newer = tmp_path / "newer"
    shutil.copytree(SHIPPED, newer)
    spec = json.loads((newer / "rtpose.json").read_text())
    spec["format_version"] = 99
    (newer / "rtpose.json").write_text(json.dumps(spec))
    with pytest.raises(RtposeError, match="newer than this rtpose"):
        ExportSpec.load(newer)


def test_unknown_and_missing_engines_are_clear():
    with pytest.raises(RtposeError, match="unknown engine 'tensorrt'.*ort-cpu"):
        load_engine(SHIPPED, "tensorrt")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RtposeError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
            load_engine(SHIPPED, "ort-cuda")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RtposeError, match="TensorrtExecutionProvider"):
            load_engine(SHIPPED, "ort-tensorrt")


def test_torch_cuda_without_a_gpu_says_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU test covers this engine")
    with pytest.raises(RtposeError, match="NVIDIA GPU"):
        load_engine(SHIPPED, "torch-cuda")


@pytest.mark.gpu
def test_torch_cuda_fp16_matches_onnx_runtime(frame):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = load_engine(SHIPPED, "torch-cuda")
    fp32 = load_engine(SHIPPED, "ort-cpu", "fp32")  # the weights the GPU runs (auto may pick int8 here)
    a, b = fp32.infer(frame), gpu.infer(frame)
    assert len(a) == len(b) and sorted(a.identity.tolist()) == sorted(b.identity.tolist())
    a_points = a.points[np.argsort(a.identity)]
    b_points = b.points[np.argsort(b.identity)]  # the same animal, by identity
    both = np.isfinite(a_points).all(axis=-1) & np.isfinite(b_points).all(axis=-1)
    assert both.sum() >= 0.9 * np.isfinite(a_points).all(axis=-1).sum()  # a node at the threshold may flip
    assert np.abs(a_points[both] - b_points[both]).max() < 1.0  # fp16 networks, fp32 peaks


@pytest.mark.parametrize("name", ["ort-cpu", pytest.param("torch-cuda", marks=pytest.mark.gpu)])
def test_run_raw_outputs_stay_as_returned_after_the_next_call(name, flies_video_path):
    """The self-check keeps every reference frame's outputs before comparing them: an engine
    that hands back views of buffers it reuses (torch-cuda's pinned host buffers, once) would
    show every frame the last one's poses and refuse its own model."""
    if name == "torch-cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    engine = load_engine(SHIPPED, name)
    with VideoReader(flies_video_path) as reader:
        a, b = (reader.read(i)[None, None] for i in (1200, 1330))
    first = engine.run_raw(np.ascontiguousarray(a))
    kept = {k: v.copy() for k, v in first.items()}
    second = engine.run_raw(np.ascontiguousarray(b))
    assert not np.allclose(second["points"], kept["points"], equal_nan=True)  # the frames differ
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k], err_msg=f"{name}: {k} changed by the next call")


def test_predict_writes_slp_with_tracks(tmp_path, flies_video_path):
    out = tmp_path / "pred.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200-1204",
                "-o", str(out), "--batch-size", "2"]) == 0
    pred = read_predictions(out)
    assert [f for _, f, _ in pred.frames] == [1200, 1201, 1202, 1203, 1204]
    assert pred.class_names == ["female", "male"] and len(pred.node_names) == 13
    assert all(len(p) >= 1 for _, _, p in pred.frames)
    # the file says what made it: rtpose's version, the export, the graph that ran
    import sleap_io as sio

    from rtpose import __version__

    prov = sio.load_slp(str(out)).provenance
    assert prov["rtpose.version"] == __version__ and prov["rtpose.model"] == str(SHIPPED.resolve())
    assert prov["rtpose.model_config_hash"] == json.loads((SHIPPED / "rtpose.json").read_text())["config_hash"]
    assert prov["rtpose.engine"] == "ort-cpu" and prov["rtpose.graph"] in ("fp32", "int8")
    assert prov["rtpose.identity_continuity"] is True


def test_predict_stdout_into_a_pipe_holds_the_result_lines_alone(tmp_path, flies_video_path):
    """No progress bar, and no blank line where one was, when stdout is a pipe or file."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "rtpose", "predict", "-m", str(SHIPPED), "-i", str(flies_video_path),
                          "--frames", "1200-1201", "-o", str(tmp_path / "p.slp")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith("2 frames, ")


def test_predict_on_labels_only_labeled(tmp_path, flies_labels_path):
    out = tmp_path / "pred.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_labels_path), "--frames", "1195-1204",
                "--only-labeled", "-o", str(out)]) == 0
    assert [f for _, f, _ in read_predictions(out).frames] == [1195, 1196, 1197, 1198, 1199]


def test_predict_only_labeled_on_frames_without_labels_names_the_labeled_ones(tmp_path, flies_labels_path, capsys):
    out = tmp_path / "pred.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_labels_path), "--frames", "1300-1310",
                "--only-labeled", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"error: {flies_labels_path}: no labeled frame in frames 1300-1310 (it holds labeled frames 0-1199)"
    assert not out.exists()


def test_predict_errors_are_one_line(tmp_path, flies_video_path, capsys):
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1400-1600"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: frame range '1400-1600' is outside clip.mp4: valid frames are 0-1499"
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(bad)]) == 2
    assert "not a readable video" in capsys.readouterr().err
    missing_dir = tmp_path / "nope" / "out.slp"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o",
                str(missing_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing_dir}: its folder does not exist"
    a_file = tmp_path / "afile"  # a file where the folder would be: said as such, as every other output says it
    a_file.write_text("")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o",
                str(a_file / "out.slp")]) == 2
    assert capsys.readouterr().err.strip() == f"error: -o {a_file / 'out.slp'}: cannot write ({a_file} is not a folder)"


def test_predict_refuses_an_existing_output_before_any_work_unless_overwrite(tmp_path, flies_video_path,
                                                                            monkeypatch, capsys):
    """An existing -o (or default output) is not replaced without a word: one line naming it
    and --overwrite, exit 2, the file untouched, said before the model or a frame is read;
    --overwrite replaces it; -o naming the input is refused even with --overwrite."""
    import rtpose.engine.predict as predict_module

    out = tmp_path / "pred.slp"
    out.write_bytes(b"an earlier run's poses")
    read = []
    for name in ("load_engine", "resolve_input"):  # the expensive steps: loading the model, reading the video
        real = getattr(predict_module, name)
        monkeypatch.setattr(predict_module, name, lambda *a, _real=real, _name=name, **k: read.append(_name) or
                            _real(*a, **k))
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out} already exists: give another -o, or --overwrite to replace it\n"
    assert out.read_bytes() == b"an earlier run's poses" and read == []
    # -o a folder (or not .slp) is told so first, not to add --overwrite
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o",
                str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path}: is a folder; predictions must be written to a .slp file "
                                       f"(e.g. -o {tmp_path / 'clip.predictions.slp'}; several inputs write into a "
                                       "folder)\n") and read == []
    named = tmp_path / "named.slp"  # a folder whose name ends in .slp: still a folder, not "already exists"
    named.mkdir()
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o", str(named),
                "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {named}: is a folder; predictions must be written") and read == []
    # a mistyped input is said first, whatever -o is (a folder here, as on the Ray form)
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path.with_name("clip.mp5")), "-o",
                str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {flies_video_path.with_name('clip.mp5')}: no such file "
                                       f"(did you mean '{flies_video_path}'?)\n") and read == []

    default = tmp_path / "clip.predictions.slp"  # no -o: INPUT.predictions.slp beside the input
    video = tmp_path / "clip.mp4"
    video.symlink_to(flies_video_path)
    default.write_bytes(b"kept")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(video), "--frames", "1200"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {default} already exists: give another -o, or --overwrite " \
                                              "to replace it"
    assert default.read_bytes() == b"kept" and read == []

    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "-o", str(out),
                "--overwrite"]) == 0
    assert [f for _, f, _ in read_predictions(out).frames] == [1200] and read == ["resolve_input", "load_engine"]

    labels = tmp_path / "labels.slp"
    shutil.copy(out, labels)
    kept = labels.read_bytes()
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(labels), "-o", str(tmp_path / "." / "labels.slp"),
                "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'labels.slp'} is the input: give another -o "
                                               "(--overwrite never replaces the input)")
    assert labels.read_bytes() == kept


def test_a_data_path_written_without_rtpose_data_gets_a_hint(flies_video_path, monkeypatch, capsys):
    """``$RTPOSE_DATA/flies13/clip.mp4`` in a shell where it is unset reads ``/flies13/clip.mp4``."""
    import rtpose.paths

    data = flies_video_path.parent.parent
    monkeypatch.delenv("RTPOSE_DATA", raising=False)
    monkeypatch.setattr(rtpose.paths, "data_dir", lambda: data)
    assert cli(["predict", "-m", str(SHIPPED), "-i", "/flies13/clip.mp4", "--frames", "1200"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: /flies13/clip.mp4: no such file (is RTPOSE_DATA unset? {flies_video_path} exists: "
                   f"export RTPOSE_DATA={data})"), err
    assert cli(["predict", "-m", str(SHIPPED), "-i", "/nowhere/clip.mp4"]) == 2
    assert capsys.readouterr().err.strip() == "error: /nowhere/clip.mp4: no such file"


def test_a_path_one_typo_away_from_one_that_exists_gets_did_you_mean(flies_video_path, tmp_path, capsys):
    """A mistyped part anywhere in a path (file, folder, model directory) is named with the mended path."""
    clip, data = flies_video_path, flies_video_path.parent.parent
    out = str(tmp_path / "p.slp")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(clip.with_suffix(".mp5")), "-o", out]) == 2
    assert capsys.readouterr().err.strip() == f"error: {clip.with_suffix('.mp5')}: no such file (did you mean '{clip}'?)"
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(data / "flies31" / "clip.mp4"), "-o", out]) == 2
    assert capsys.readouterr().err.strip().endswith(f"no such file (did you mean '{clip}'?)")
    assert cli(["predict", "-m", str(SHIPPED.parent / "flies31"), "-i", str(clip), "-o", out]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {SHIPPED.parent / 'flies31'}: no such export directory "
                                               f"(did you mean '{SHIPPED}'?)")
    # Nothing near: no guess, and the export hint stays.
    assert cli(["predict", "-m", str(tmp_path / "zzz"), "-i", str(clip), "-o", out]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'zzz'}: no such export directory "
                                               "(make one with `rtpose export`)")
    assert not Path(out).exists()


def test_a_shipped_path_named_from_another_directory_points_at_the_repository(flies_video_path, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["predict", "-m", "models/flies13", "-i", str(flies_video_path), "-o", str(tmp_path / "p.slp")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: models/flies13: no such export directory here ({tmp_path}; "
                                               f"did you mean '{SHIPPED}', in rtpose's repository?)")


def test_predict_default_output_sits_beside_a_writable_input(tmp_path):
    from rtpose.engine.predict import default_output

    assert default_output(tmp_path / "clip.mp4") == tmp_path / "clip.predictions.slp"


def test_predict_default_output_leaves_a_read_only_folder_alone_even_for_root(tmp_path, monkeypatch):
    # shared data is dr-xr-xr-x; root may write there, and a new-user trial did, as root
    from rtpose.engine.predict import default_output

    shared, here = tmp_path / "shared", tmp_path / "work"
    shared.mkdir()
    here.mkdir()
    shared.chmod(0o555)
    monkeypatch.chdir(here)
    try:
        assert default_output(shared / "clip.mp4") == here / "clip.predictions.slp"
    finally:
        shared.chmod(0o755)


def test_bench_reports_latency(tmp_path, flies_video_path, capsys):
    out = tmp_path / "bench.json"
    png = tmp_path / "hist.png"
    assert cli(["bench", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200-1209",
                "--warmup", "2", "--no-batch-sweep", "--batch-size", "2", "--json", str(out),
                "--histogram", str(png)]) == 0
    result = json.loads(out.read_text())
    lat = result["latency_ms"]
    assert result["engine"] == "ort-cpu" and result["n"] == 10 and result["device"]
    assert result["graph"] in ("fp32", "int8") and result["graph_reason"] and result["self_check"]["passed"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] and result["fps"] > 0
    assert result["fps_at_batch_size"]["2"] > 0 and png.stat().st_size > 1000
    assert result["machine"]["other_processes_cores_busy"] >= 0  # measured on Linux (/proc/stat)
    out_lines = capsys.readouterr().out.splitlines()
    assert f"figures: {out}" in out_lines and f"histogram: {png}" in out_lines  # it says where it wrote


BENCH_FAST = ["--frames", "1200-1201", "--warmup", "0", "--no-batch-sweep"]
TIMED = "batch 1 round trip"  # the line bench prints once it has timed


def test_bench_refuses_an_existing_json_or_histogram_before_timing_unless_overwrite(tmp_path, flies_video_path,
                                                                                   capsys):
    """`bench --json`/`--histogram` on an existing file: one line naming it, the option and
    --overwrite, exit 2, nothing timed, the file untouched; --overwrite replaces both."""
    bench = ["bench", "-m", str(SHIPPED), "-i", str(flies_video_path), *BENCH_FAST]
    out, png = tmp_path / "bench.json", tmp_path / "hist.png"
    out.write_bytes(b"an earlier bench")
    png.write_bytes(b"an earlier histogram")
    for option, path in (("--json", out), ("--histogram", png)):
        assert cli([*bench, option, str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"error: {path} already exists: give another {option}, or --overwrite to replace it\n"
        assert TIMED not in captured.out
    assert out.read_bytes() == b"an earlier bench" and png.read_bytes() == b"an earlier histogram"
    assert cli([*bench, "--json", str(out), "--histogram", str(png), "--overwrite"]) == 0
    assert TIMED in capsys.readouterr().out
    assert json.loads(out.read_text())["n"] == 2 and png.read_bytes().startswith(b"\x89PNG")


def test_bench_histogram_it_cannot_write_is_one_line_before_timing(tmp_path, flies_video_path, capsys):
    """A --histogram whose extension matplotlib cannot write (or without one: matplotlib would
    write another file, NAME.png), or under a file where a folder should be, is one line, exit 2,
    before any timing; a missing folder is created, as for --json."""
    from matplotlib.figure import Figure

    bench = ["bench", "-m", str(SHIPPED), "-i", str(flies_video_path), *BENCH_FAST]
    formats = ", ".join("." + f for f in sorted(Figure().canvas.get_supported_filetypes()))
    for name, said in (("hist.txt", "matplotlib cannot write .txt files"),
                       ("hist", "no extension to choose the format by")):
        assert cli([*bench, "--histogram", str(tmp_path / name)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"error: --histogram {tmp_path / name}: {said}; end the name in one of {formats}\n"
        assert TIMED not in captured.out and not (tmp_path / name).exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli([*bench, "--histogram", str(blocker / "hist.png")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --histogram {blocker / 'hist.png'}: cannot write ({blocker} is not a folder)\n"
    assert TIMED not in captured.out
    nested = tmp_path / "new" / "folder" / "hist.svg"
    assert cli([*bench, "--histogram", str(nested)]) == 0
    assert TIMED in capsys.readouterr().out and b"<svg" in nested.read_bytes()


def test_other_load_counts_a_busy_process_and_not_our_own_work():
    """What bench's load warning rests on: a busy child process shows as about one core of
    other load; this process's own busy loop does not count."""
    import subprocess
    import sys
    import time

    from rtpose.machine import OtherLoad

    with OtherLoad() as own:
        t_end = time.monotonic() + 0.5
        while time.monotonic() < t_end:
            pass
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the child is running its loop
        with OtherLoad() as other:
            time.sleep(1.0)
    finally:
        busy.kill()
        busy.wait()
    assert other.cores > 0.5 + own.cores, (other.cores, own.cores)


def test_bench_recommends_the_smallest_batch_among_those_equal_as_printed():
    """A sweep whose figures all print 23 recommends batch 1 and names the others as no
    faster (it once said "best 23 at batch 2"); a real gain still picks the larger batch."""
    from rtpose.engine.bench import best_batch

    assert best_batch({"1": 22.8, "2": 23.4, "4": 23.1, "8": 22.6}) == ("1", ["2", "4", "8"])
    assert best_batch({"1": 22.4, "2": 23.4, "4": 23.1}) == ("2", ["4"])  # 22 against 23: 2 is faster
    assert best_batch({"1": 187.0, "2": 199.6, "4": 210.2, "8": 205.0}) == ("4", [])


# ---------------------------------------------------------------- self-checking exports


def _perturbed(tmp_path: Path, graph_file: str) -> Path:
    """A copy of the shipped export with one weight of ``graph_file`` changed."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "perturbed"
    shutil.copytree(SHIPPED, out)
    model = onnx.load(str(out / graph_file))
    name = "instance.backbone.stem.0.weight" + ("_quantized" if "int8" in graph_file else "")
    init = next(i for i in model.graph.initializer if i.name == name)
    w = numpy_helper.to_array(init).copy()
    i = int(np.abs(w.astype(np.float32)).argmax())  # the largest kernel value of one filter, turned over
    w.flat[i] = -127 * np.sign(w.flat[i]) if "int8" in graph_file else -8 * w.flat[i]
    init.CopyFrom(numpy_helper.from_array(w, name))
    onnx.save(model, str(out / graph_file))
    return out


def test_shipped_export_passes_its_self_check_here(capsys, tmp_path):
    """`rtpose check`: both graphs reproduce the references on this CPU (whatever it is),
    and it says which graph ort-cpu would run."""
    spec = ExportSpec.load(SHIPPED)
    assert set(spec.graphs) == {"fp32", "int8"}
    assert (SHIPPED / "reference.npz").stat().st_size < 200_000  # a few masked frames, not whole videos
    out = tmp_path / "check.json"
    assert cli(["check", "-m", str(SHIPPED), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("ok   ") == 2 and "ort-cpu would run: " in text
    result = json.loads(out.read_text())
    assert result["passed"] and [g["graph"] for g in result["graphs"]] == ["fp32", "int8"]
    assert result["choice"]["graph"] in ("fp32", "int8") and result["choice"]["reason"]
    fp32 = result["graphs"][0]
    assert fp32["frames_same_count"] == fp32["frames"] >= 2 and fp32["ids_same"] == fp32["ids_total"]


def test_check_refuses_an_existing_json_before_running_unless_overwrite(tmp_path, capsys):
    """`check --json` on an existing file: one line, exit 2, no graph run, the file untouched;
    --overwrite replaces it."""
    out = tmp_path / "check.json"
    out.write_bytes(b"an earlier check")
    assert cli(["check", "-m", str(SHIPPED), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {out} already exists: give another --json, or --overwrite to replace it\n"
    assert captured.out == "" and out.read_bytes() == b"an earlier check"
    assert cli(["check", "-m", str(SHIPPED), "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["passed"] is True


def test_engine_says_which_graph_runs_and_why(engine):
    assert engine.graph in ("fp32", "int8") and engine.check is not None and engine.check.passed
    reason = engine.graph_reason
    if engine.graph == "int8":
        assert "passes its self-check and is faster here" in reason
    else:
        assert "not faster here" in reason or "fails its self-check" in reason


def test_graph_choice_follows_the_timing_cached_per_machine(tmp_path, monkeypatch):
    """The decision rule on the cached timing: int8 only where it is faster by FASTER."""
    from rtpose.engine.graph_choice import CACHE_FILE, FASTER

    monkeypatch.setenv("RTPOSE_CACHE_DIR", str(tmp_path))
    first = load_engine(SHIPPED, "ort-cpu")
    assert "just timed" in first.graph_reason
    cache = json.loads((tmp_path / CACHE_FILE).read_text())
    (key, entry), = cache.items()
    for int8_ms, expected in ((5.0, "int8"), (10.0 * FASTER + 0.5, "fp32")):
        entry["ms"] = {"fp32": 10.0, "int8": int8_ms}
        (tmp_path / CACHE_FILE).write_text(json.dumps({key: entry}))
        again = load_engine(SHIPPED, "ort-cpu")
        assert again.graph == expected and "cached in" in again.graph_reason
        assert f"{int8_ms:.1f} vs 10.0 ms" in again.graph_reason


class _SpunSession:
    """A session whose first run after another session's runs is slowed, as ONNX Runtime's
    spinning worker threads of the other session slow it on a small CPU."""

    def __init__(self, name, ms, log):
        self.name, self.ms, self.log = name, ms, log

    def run(self, outputs, feeds):
        import time

        slowed = bool(self.log) and self.log[-1] != self.name
        self.log.append(self.name)
        time.sleep((self.ms * (3 if slowed else 1)) / 1e3)


def test_graph_timing_alternates_blocks_and_skips_the_run_after_a_switch():
    from rtpose.engine.graph_choice import BLOCK, TIMED_ROUNDS, WARMUP, time_graphs

    log: list[str] = []
    sessions = {"fp32": _SpunSession("fp32", 4.0, log), "int8": _SpunSession("int8", 2.0, log)}
    ms = time_graphs(sessions, np.zeros((8, 8), np.uint8))
    timed = log[2 * WARMUP:]  # after the untimed runs of each
    assert timed[:BLOCK] == ["fp32"] * BLOCK and timed[BLOCK:2 * BLOCK] == ["int8"] * BLOCK
    assert len(timed) == 2 * BLOCK * TIMED_ROUNDS
    # the slowed first run of each block is not counted: medians are the steady times
    assert 4.0 <= ms["fp32"] < 10.0 and 2.0 <= ms["int8"] < 5.5


def test_precision_can_be_forced(flies_video_path, tmp_path, capsys):
    assert load_engine(SHIPPED, "ort-cpu", precision="fp32").graph == "fp32"
    forced = load_engine(SHIPPED, "ort-cpu", precision="int8")
    assert forced.graph == "int8" and forced.graph_reason == "forced"
    with pytest.raises(RtposeError, match="unknown precision 'fp16'"):
        load_engine(SHIPPED, "ort-cpu", precision="fp16")
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(flies_video_path), "--frames", "1200", "--fp32",
                "-o", str(tmp_path / "p.slp")]) == 0
    assert "ran the fp32 graph (forced)" in capsys.readouterr().out


def test_an_export_with_one_weight_changed_is_refused(tmp_path, capsys):
    bad = _perturbed(tmp_path, "model.onnx")
    with pytest.raises(RtposeError) as error:
        load_engine(bad, "ort-cpu", precision="fp32")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{bad}: the fp32 graph on ort-cpu fails its self-check")
    assert "export it again" in message
    assert cli(["check", "-m", str(bad)]) == 1
    assert "FAIL fp32 graph" in capsys.readouterr().out


def test_a_broken_int8_graph_falls_back_to_fp32_or_is_refused_when_forced(tmp_path):
    bad = _perturbed(tmp_path, "model.int8.onnx")
    chosen = load_engine(bad, "ort-cpu")
    assert chosen.graph == "fp32" and "int8 fails its self-check here" in chosen.graph_reason
    with pytest.raises(RtposeError, match=r"the int8 graph on ort-cpu fails its self-check.*run the fp32 graph"):
        load_engine(bad, "ort-cpu", precision="int8")


def test_a_format_1_export_still_loads_unchecked(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(SHIPPED / "model.int8.onnx", old / "model.onnx")
    spec = json.loads((SHIPPED / "rtpose.json").read_text())
    spec["format_version"] = 1
    del spec["graphs"]
    (old / "rtpose.json").write_text(json.dumps(spec))
    loaded = load_engine(old, "ort-cpu")
    assert loaded.graph == "int8" and loaded.check is None and "unchecked" in loaded.graph_reason
    assert cli(["check", "-m", str(old)]) == 2


@pytest.mark.parametrize("argv, line", [
    (["bench", "-m", str(SHIPPED), "-i", "{video}", "--warmup", "-3"], "--warmup must be 0 or more (got -3)"),
    (["bench", "-m", str(SHIPPED), "-i", "{video}", "--batch-size", "0"], "--batch-size must be at least 1 (got 0)"),
    (["export", str(SHIPPED), "-o", "{tmp}/e", "--max-instances", "0"], "--max-instances must be at least 1 (got 0)"),
    (["export", str(SHIPPED), "-o", "{tmp}/e", "--int8", "--calibration-frames", "0"],
     "--calibration-frames must be at least 1 (got 0)"),
    (["listen", "tcp://127.0.0.1:99999"], "tcp://127.0.0.1:99999: port 99999 is not a TCP port (1-65535)"),
])
def test_numbers_out_of_range_are_one_line_before_any_work(argv, line, flies_video_path, tmp_path, capsys):
    argv = [a.format(video=flies_video_path, tmp=tmp_path) for a in argv]
    assert cli(argv) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {line}\n" and out == ""
    assert not (tmp_path / "e").exists()


def test_predict_says_so_when_the_model_finds_no_animal_at_all(tmp_path, frame, capsys):
    """An empty arena (the clip's background level everywhere) gives a valid but empty .slp: the user is told."""
    path = tmp_path / "empty_arena.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1024, 1024), isColor=False)
    for _ in range(3):
        writer.write(np.full((1024, 1024), int(np.median(frame)), np.uint8))
    writer.release()
    assert cli(["predict", "-m", str(SHIPPED), "-i", str(path), "-o", str(tmp_path / "p.slp")]) == 0
    out, err = capsys.readouterr()
    assert "3 frames, 0 instances" in out
    assert "warning: the model found no animal in any of the 3 frames" in err


def test_a_report_is_never_written_over_an_input_even_with_overwrite(tmp_path, flies_video_path, capsys):
    """--overwrite is for an earlier output: a --json or --summary naming the command's own input
    (the predictions scored, the video timed, the protocol run, a file of the export checked) is refused."""
    export = tmp_path / "export"
    shutil.copytree(SHIPPED, export)
    video = tmp_path / "clip.avi"
    video.write_bytes(b"not read")
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("not read either\n")
    labels = flies_video_path.with_name("clip.close.slp")
    cases = [
        (["check", "-m", str(export), "--json", str(export / "rtpose.json")], "--json", export / "rtpose.json",
         f"lies in {export}, an input of this command"),
        (["bench", "-m", str(SHIPPED), "-i", str(video), "--json", str(video)], "--json", video,
         "is an input of this command"),
        (["run", str(protocol), "--summary", str(protocol)], "--summary", protocol, "is an input of this command"),
        (["eval", "-g", str(labels), "-p", str(video), "--json", str(video)], "--json", video,
         "is an input of this command"),
    ]
    for argv, option, target, what in cases:
        before = target.read_bytes()
        assert cli([*argv, "--overwrite"]) == 2, argv
        assert capsys.readouterr().err == (f"error: {option} {target} {what}: give another {option} (--overwrite "
                                           "never replaces an input)\n")
        assert target.read_bytes() == before


def test_a_damaged_export_file_is_one_line_and_a_damaged_int8_graph_leaves_the_fp32_one(tmp_path,
                                                                                        flies_video_path, capsys):
    """A truncated copy (an interrupted transfer to the rig PC) is said in one line, exit 2, not a traceback."""
    def damaged(name: str) -> Path:
        export = tmp_path / f"copy_{name}"
        shutil.copytree(SHIPPED, export)
        (export / name).write_bytes((SHIPPED / name).read_bytes()[:1000])
        return export

    export = damaged("model.onnx")
    assert cli(["check", "-m", str(export)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {export / 'model.onnx'}: ONNX Runtime cannot load this graph")
    assert err[0].endswith("a damaged or truncated copy? copy the export again, or export it again")
    export = damaged("reference.npz")
    assert cli(["check", "-m", str(export)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {export / 'reference.npz'}: not readable reference outputs")
    export = damaged("model.int8.onnx")
    assert cli(["predict", "-m", str(export), "-i", str(flies_video_path), "--frames", "1200",
                "-o", str(tmp_path / "p.slp")]) == 0
    assert "ran the fp32 graph (the int8 graph could not be loaded" in capsys.readouterr().out


def test_ctrl_c_of_predict_is_one_line_saying_what_was_lost(flies_video_path, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "p.slp"
    command = [sys.executable, "-m", "rtpose", "predict", "-m", str(SHIPPED), "-i", str(flies_video_path)]
    # how long start-up (imports, the model, one frame) takes on this machine: the interrupt
    # comes just after it, inside the 1500 frames (a fixed wait missed them on a fast CPU)
    t0 = time.monotonic()
    subprocess.run([*command, "--frames", "0", "-o", str(tmp_path / "one.slp")], capture_output=True, check=True)
    startup = time.monotonic() - t0
    # Ctrl-C as at a terminal even where this suite runs in the background (nohup, `make test &`),
    # whose children inherit SIGINT ignored
    process = subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(startup + 0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted after ") and lines[0].endswith(
        f"of 1500 frames: nothing written ({out} is written at the end, in one go)"), err
    assert not out.exists()
