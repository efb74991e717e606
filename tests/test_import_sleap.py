"""Models trained elsewhere: SLEAP 1.x (Keras .h5) and sleap-nn (PyTorch .ckpt) top-down
models exported into rtpose's graph, on the real models in ../shared and real frames.

Parity with sleap-nn's own predictor (0.1 px) and with Keras (1e-4) needs sleap-nn or
TensorFlow, which are never dependencies: bench/sleap_import_parity.py measures those in
a side environment. Here: the readers, the conventions they rely on, the export
contract, ONNX Runtime against the torch modules, and the one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import torch
import torch.nn.functional as F
import yaml

from rtpose.cli import main as cli
from rtpose.data.video import VideoReader
from rtpose.engine.base import load_engine
from rtpose.engine.torch_cuda import pipeline_from_export
from rtpose.errors import RtposeError
from rtpose.export.importers import import_topdown, read_net
from rtpose.export.importers.common import load_layers
from rtpose.export.quantize import matched_point_shifts
from rtpose.export.spec import ExportSpec
from rtpose.nn.pipeline import resize_antialias
from rtpose.nn.unet import UNet, UNetSpec, count_parameters
from rtpose.paths import data_dir

SHARED = data_dir().parent
LEGACY = SHARED / "models_sleap_legacy"
PEER = SHARED / "peer"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test model missing: {path} (the shared directory beside the data)")
    return path


@pytest.fixture(scope="module")
def legacy_pair() -> list[Path]:
    return [_need(LEGACY / "minimal_instance.UNet.centroid"), _need(LEGACY / "minimal_instance.UNet.centered_instance")]


@pytest.fixture(scope="module")
def peer_pair() -> list[Path]:
    return [_need(PEER / "centroid"), _need(PEER / "centered_instance_id")]


@pytest.fixture(scope="module")
def legacy_export(legacy_pair, minimal_labels_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("legacy") / "export"
    assert cli(["export", *map(str, legacy_pair), "-o", str(out), "--frame-size", "384x384",
                "--max-instances", "2", "--video", str(minimal_labels_path)]) == 0
    return out


@pytest.fixture(scope="module")
def peer_export(peer_pair, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("peer") / "export"
    # Given in the other order on purpose: the roles come from the configs.
    assert cli(["export", str(peer_pair[1]), str(peer_pair[0]), "-o", str(out), "--max-instances", "2"]) == 0
    return out


# ---------------------------------------------------------------- conventions


def test_keras_transposed_conv_is_the_gradient_of_a_same_padded_conv():
    """TensorFlow defines conv2d_transpose as the gradient of conv2d with respect to its
    input; for ``padding="same"``, stride 2, kernel 3 and an even output, that conv pads
    0 pixels before and 1 after. Our ``transposed_keras`` upsampling must be exactly that,
    and PyTorch's (sleap-nn's) alignment must not."""
    torch.manual_seed(0)
    spec = UNetSpec(filters=4, down_blocks=1, up_blocks=1, stem_stride=1, batch_norm=False, skip_first=True,
                    upsampling="transposed_keras")
    net = UNet(spec)
    conv_t = net.upsample[0]
    x = torch.randn(1, conv_t.in_channels, 5, 7)
    fine = torch.zeros(1, conv_t.out_channels, 10, 14, requires_grad=True)
    forward = F.conv2d(F.pad(fine, (0, 1, 0, 1)), conv_t.weight, stride=2)  # (in, out, k, k): fine -> coarse
    (grad,) = torch.autograd.grad(forward, fine, grad_outputs=x)
    expected = grad + conv_t.bias.reshape(1, -1, 1, 1)
    assert torch.allclose(net._transposed(conv_t, x), expected, atol=1e-5)
    net.spec.upsampling = "transposed"
    assert not torch.allclose(net._transposed(conv_t, x), expected, atol=1e-2)


@pytest.mark.parametrize("shape,scale", [((1, 1, 1024, 1024), 0.25), ((2, 1, 96, 120), 0.5), ((1, 1, 50, 70), 0.6)])
def test_antialiased_resize_matches_torch(shape, scale):
    """sleap-nn scales frames with torchvision's antialiased bilinear resize; ours is a
    strided convolution (1/k) or two matrices, so that it exports to opset 17."""
    torch.manual_seed(1)
    x = torch.rand(shape) * 255
    size = (int(shape[2] * scale), int(shape[3] * scale))
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(resize_antialias(x, scale), ref, atol=1e-3)


def test_peer_networks_have_the_parameter_count_sleap_nn_recorded(peer_pair):
    """sleap-nn writes the trained model's parameter count into its config; the modules
    our reader builds from the same config must hold exactly that many."""
    for model_dir in peer_pair:
        net_info = read_net(model_dir)
        net = net_info.arch.build()
        load_layers(net, net_info)
        recorded = yaml.safe_load((model_dir / "training_config.yaml").read_text())["model_config"]["total_params"]
        assert count_parameters(net) == recorded, model_dir


# ---------------------------------------------------------------- SLEAP 1.x


def test_legacy_export_records_its_source(legacy_export, legacy_pair):
    spec = ExportSpec.load(legacy_export)
    assert spec.source["format"] == "sleap-1.x"
    nets = spec.source["networks"]
    assert nets["centroid"]["model_type"] == "centroid" and nets["instance"]["model_type"] == "centered_instance"
    for role, model_dir in zip(("centroid", "instance"), legacy_pair):
        for name, digest in nets[role]["sha256"].items():
            assert digest == hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
    assert spec.source["ignored_layers"] == ["OffsetRefinementHead_0"]
    assert spec.node_names == ["A", "B"] and spec.edges == [(0, 1)] and spec.crop_size == 96
    assert spec.architecture["pipeline"] == {"conventions": "sleap", "resize": "bilinear"}
    assert spec.architecture["centroid"]["unet"]["upsampling"] == "transposed_keras"


def test_legacy_model_finds_the_labelled_instances(legacy_export, minimal_labels_path):
    """The SLEAP 1.x test models on the frame they were trained on: both instances, every
    node within 2 px of its label."""
    labels = sio.load_slp(str(minimal_labels_path))
    truth = np.stack([inst.numpy() for inst in labels.labeled_frames[0].instances])
    with VideoReader(minimal_labels_path) as reader:
        frame = reader.read(labels.labeled_frames[0].frame_idx)
    engine = load_engine(legacy_export, "ort-cpu")
    poses = engine.infer(frame)
    assert len(poses.points) == len(truth) == 2
    dist = matched_point_shifts(truth, poses.points)
    assert np.isfinite(dist).all() and dist.max() < 2.0, dist


def test_legacy_torch_rebuild_matches_onnx_runtime(legacy_export, minimal_labels_path):
    """What the torch-cuda engine runs for an imported model: modules rebuilt from
    rtpose.json, weights reloaded from model.onnx by name (here on the CPU)."""
    with VideoReader(minimal_labels_path) as reader:
        frame = reader.read(0)
    pipeline = pipeline_from_export(legacy_export)
    with torch.no_grad():
        out = [t.numpy() for t in pipeline(torch.from_numpy(frame)[None, None])]
    raw = load_engine(legacy_export, "ort-cpu").run_raw(frame[None, None])
    assert np.array_equal(out[4], raw["valid"]) and out[4].any()
    assert np.abs(out[0][out[4]] - raw["points"][raw["valid"]]).max() <= 0.1


def test_legacy_multiclass_head_reads_as_softmax_probabilities():
    """min_tracks_2node's identity head: 3 ReLU dense layers and a softmax over
    female/male, from the global max pool of the middle block."""
    net_info = read_net(_need(LEGACY / "min_tracks_2node.UNet.topdown_multiclass"))
    assert net_info.model_type == "multi_class_topdown" and net_info.class_names == ["female", "male"]
    net = net_info.arch.build()
    load_layers(net, net_info)
    net.eval()
    with torch.no_grad():
        cms, logits = net(torch.rand(3, 1, 128, 128))
    assert cms.shape == (3, 2, 64, 64) and logits.shape == (3, 2)
    assert net_info.arch.class_layers == 4 and net_info.crop_size == 128


# ---------------------------------------------------------------- sleap-nn


def test_peer_export_contract(peer_export, peer_pair):
    spec = ExportSpec.load(peer_export)
    assert spec.source["format"] == "sleap-nn"
    assert all(n["version"] == "0.3.5" for n in spec.source["networks"].values())
    assert spec.class_names == ["female", "male"] and spec.n_nodes == 13 and spec.anchor_part == "thorax"
    assert (spec.frame_height, spec.frame_width) == (1024, 1024) and spec.crop_size == 160
    assert spec.input_scale == 0.25 and spec.refinement == "integral_raw"
    assert spec.architecture["pipeline"] == {"conventions": "sleap", "resize": "antialias_uint8"}


def test_an_imported_export_with_video_keeps_held_out_frames_as_references(peer_pair, flies_video_path, tmp_path,
                                                                          capsys):
    """With ``--video``, an imported model's references are frames of the last 20% of the
    video (never calibrated on), three of them, not the one check frame."""
    out = tmp_path / "peer"
    assert cli(["export", *map(str, peer_pair), "-o", str(out), "--max-instances", "2",
                "--video", str(flies_video_path)]) == 0
    refs = ExportSpec.load(out).extra["references"]["video_frames"]
    with VideoReader(flies_video_path) as reader:
        n = len(list(reader.frame_indices))
    assert len(refs) == 3 and all(i >= int(n * 0.8) for i in refs), refs
    assert cli(["check", "-m", str(out)]) == 0, capsys.readouterr().out


def test_peer_onnx_agrees_with_its_torch_modules(peer_export, peer_pair, flies_video_path):
    """fp32 ONNX Runtime vs the imported torch pipeline on close-courtship frames: the
    same instances, points within 0.1 px, the same identities."""
    from rtpose.engine.base import raw_to_poses

    pipeline, _ = import_topdown(peer_pair, max_instances=2)
    engine = load_engine(peer_export, "ort-cpu")
    with VideoReader(flies_video_path) as reader:
        frames = [reader.read(i) for i in (1200, 1250, 1299)]
    for frame in frames:
        with torch.no_grad():
            expected = dict(zip(["points", "point_scores", "instance_scores", "class_probs", "valid"],
                                [t.numpy() for t in pipeline(torch.from_numpy(frame)[None, None])]))
        got = engine.run_raw(frame[None, None])
        assert np.array_equal(expected["valid"], got["valid"]) and got["valid"].sum() == 2
        assert np.abs(expected["points"] - got["points"]).max() <= 0.1
        assert np.array_equal(raw_to_poses(got, 0, engine.spec).identity,
                              raw_to_poses(expected, 0, engine.spec).identity)


def test_peer_export_runs_batches_like_single_frames(peer_export, flies_video_path):
    """The imported graph keeps a dynamic batch (sleap-nn's antialiased resize included):
    ``predict --batch-size`` and the bench's sweep run it, and a batch gives each frame's
    poses as a single run does."""
    engine = load_engine(peer_export, "ort-cpu")
    with VideoReader(flies_video_path) as reader:
        frames = [reader.read(i) for i in (1200, 1250, 1299)]
    for single, batched in zip((engine.infer(f) for f in frames), engine.infer_batch(frames)):
        assert np.array_equal(single.identity, batched.identity)
        assert np.allclose(single.points, batched.points, atol=1e-3, equal_nan=True)


def test_peer_model_finds_the_labelled_flies_with_their_identities(peer_export, flies_video_path):
    """On labelled close-courtship frames: two flies, the nodes it finds at a median
    under 5 px from their labels (the peer is poorly trained: most nodes fall under its
    threshold), and each fly named as its labelled track."""
    from scipy.optimize import linear_sum_assignment

    labels = sio.load_slp(str(data_dir() / "flies13" / "clip.close.slp"))
    engine = load_engine(peer_export, "ort-cpu")
    with VideoReader(flies_video_path) as reader:
        for lf in labels.labeled_frames[:4]:
            poses = engine.infer(reader.read(lf.frame_idx))
            truth = np.stack([inst.numpy() for inst in lf.instances])
            assert len(poses.points) == 2
            dist = np.linalg.norm(truth[:, None] - poses.points[None], axis=-1)  # (truth, found, nodes)
            cost = np.nanmedian(np.where(np.isfinite(dist), dist, np.nan), axis=-1)
            rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=1e6))
            assert np.nanmedian(dist[rows, cols]) < 5.0, (lf.frame_idx, dist[rows, cols])
            for r, c in zip(rows, cols):
                assert engine.spec.class_names[poses.identity[c]] == lf.instances[r].track.name, lf.frame_idx


# ---------------------------------------------------------------- bad input


def export_error(args: list[str], capsys) -> str:
    code = cli(["export", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize("name,kind", [("minimal_instance.UNet.bottomup", "bottom-up"),
                                       ("minimal_robot.UNet.single_instance", "single instance")])
def test_unsupported_model_types_are_named(name, kind, tmp_path, capsys):
    msg = export_error([str(_need(LEGACY / name)), "-o", str(tmp_path / "x")], capsys)
    assert f"{kind} models are not supported" in msg and name in msg
    msg = export_error([str(LEGACY / name), str(LEGACY / "minimal_instance.UNet.centroid"), "-o",
                        str(tmp_path / "x")], capsys)
    assert f"{kind} models are not supported" in msg
    assert not (tmp_path / "x").exists()


def test_legacy_config_that_does_not_match_its_weights_names_the_layer(legacy_pair, tmp_path, capsys):
    bad = tmp_path / "centroid"
    shutil.copytree(legacy_pair[0], bad)
    cfg = json.loads((bad / "training_config.json").read_text())
    cfg["model"]["backbone"]["unet"]["filters_rate"] = 2.0
    (bad / "training_config.json").write_text(json.dumps(cfg))
    msg = export_error([str(bad), str(legacy_pair[1]), "-o", str(tmp_path / "x"), "--frame-size", "384x384"], capsys)
    assert "best_model.h5: layer stack0_enc1_conv0 weight has shape" in msg


def test_sleap_nn_config_that_does_not_match_its_weights_names_the_layer(peer_pair, tmp_path, capsys):
    bad = tmp_path / "ci"
    shutil.copytree(peer_pair[1], bad)
    cfg = yaml.safe_load((bad / "training_config.yaml").read_text())
    cfg["model_config"]["head_configs"]["multi_class_topdown"]["class_vectors"]["num_fc_units"] = 32
    (bad / "training_config.yaml").write_text(yaml.safe_dump(cfg))
    msg = export_error([str(peer_pair[0]), str(bad), "-o", str(tmp_path / "x")], capsys)
    assert "best.ckpt: layer pre_classification0_fc weight has shape (64, 256)" in msg


def test_sleap_nn_model_runs_at_its_training_frame_size_only(peer_pair, tmp_path, capsys):
    msg = export_error([*map(str, peer_pair), "-o", str(tmp_path / "x"), "--frame-size", "512x512"], capsys)
    assert "--frame-size 512x512" in msg and "trained on 1024x1024" in msg


def test_two_centroid_models_or_a_missing_frame_size(legacy_pair, tmp_path, capsys):
    msg = export_error([str(legacy_pair[0]), str(legacy_pair[0]), "-o", str(tmp_path / "x")], capsys)
    assert "needs a centroid model and a centered_instance or multi_class_topdown model" in msg
    msg = export_error([*map(str, legacy_pair), "-o", str(tmp_path / "x")], capsys)
    assert "--frame-size" in msg
    msg = export_error([str(tmp_path), "-o", str(tmp_path / "x")], capsys)
    assert "not a model directory" in msg and "pass those" not in msg
    # the folder above the model directories: they are named
    msg = export_error([str(PEER), "-o", str(tmp_path / "x")], capsys)
    assert "not a model directory" in msg and "it holds model directories (centered_instance_id, centroid)" in msg
    # a missing directory is said first, not taken for an imported model (which --int8 would ask --video of)
    msg = export_error([str(tmp_path / "runs" / "flies13"), "-o", str(tmp_path / "x"), "--int8"], capsys)
    assert msg == f"error: {tmp_path / 'runs' / 'flies13'}: no such model directory"


def test_a_video_that_does_not_fit_the_frame_size_is_refused(legacy_pair, flies_video_path, tmp_path, capsys):
    """1024x1024 fly frames are never cut to a 384x384 export's size for its checks."""
    out = tmp_path / "x"
    msg = export_error([*map(str, legacy_pair), "-o", str(out), "--video", str(flies_video_path), "--frame-size",
                        "384x384", "--max-instances", "2"], capsys)
    assert msg.startswith(f"error: --video {flies_video_path}: frames are 1024x1024 but the export is for 384x384")
    assert "--frame-size 1024x1024" in msg and not out.exists()


def test_the_frame_size_comes_from_the_video_when_the_model_does_not_record_it(legacy_pair, minimal_labels_path,
                                                                                tmp_path, capsys):
    """A SLEAP 1.x config records no frame size: ``--video`` gives it, and the references
    are said in words (the package's one frame), not as an index."""
    out = tmp_path / "x"
    assert cli(["export", *map(str, legacy_pair), "-o", str(out), "--video", str(minimal_labels_path),
                "--max-instances", "2"]) == 0
    printed = capsys.readouterr().out
    with VideoReader(minimal_labels_path) as reader:
        held, shape = list(reader.frame_indices), reader.shape
    spec = ExportSpec.load(out)
    assert (spec.frame_height, spec.frame_width) == shape and len(held) == 1
    words = f"frame {held[0]} of {minimal_labels_path.name} (the one frame it holds)"
    assert f"references (reference.npz): fp32 outputs on {words}" in printed and "[-1]" not in printed
    assert spec.extra["references"]["video_frames"] == held
    assert cli(["check", "-m", str(out)]) == 0
    assert f"reference frames: {words}" in capsys.readouterr().out


def test_int8_from_a_one_frame_package_says_its_check_saw_the_calibration_frame(legacy_pair, minimal_labels_path,
                                                                                 tmp_path, capsys):
    """The package holds one frame: it calibrates int8 and is the only frame to compare on,
    which the export says instead of calling it held out; ONNX Runtime's progress lines
    stay off stdout."""
    assert cli(["export", *map(str, legacy_pair), "-o", str(tmp_path / "x"), "--video", str(minimal_labels_path),
                "--max-instances", "2", "--int8"]) == 0
    printed = capsys.readouterr().out
    assert f"calibrated on 1 frame of {minimal_labels_path.name}" in printed
    assert "from fp32 on the same 1 frame(s)" in printed and "held-out" not in printed
    assert "Collecting tensor data" not in printed and "Finding optimal threshold" not in printed


def test_an_export_without_real_frames_says_its_reference_is_a_blank_frame(legacy_pair, tmp_path, capsys):
    out = tmp_path / "x"
    assert cli(["export", *map(str, legacy_pair), "-o", str(out), "--frame-size", "384x384"]) == 0
    printed = capsys.readouterr().out
    assert "fp32 outputs on a blank frame (no real frame at hand: give --video VIDEO" in printed
    assert "[-1]" not in printed


def test_export_prints_and_stores_paths_without_dot_dot(legacy_pair, tmp_path, monkeypatch, capsys):
    """`$PWD/../shared/data/../models_sleap_legacy/...` (the README's RTPOSE_DATA, then ..):
    what export prints and rtpose.json's source keep is the absolute path without `..`;
    a model dir reached through a link keeps the link's name (the user's name for it)."""
    link = tmp_path / "models"
    link.symlink_to(legacy_pair[0].parent)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    given = [f"{legacy_pair[0].parent}/../{legacy_pair[0].parent.name}/{legacy_pair[0].name}",
             f"../models/{legacy_pair[1].name}"]
    assert cli(["export", *given, "-o", "../work/../out", "--frame-size", "384x384"]) == 0
    printed = capsys.readouterr().out
    dirs = [str(legacy_pair[0]), str(link / legacy_pair[1].name)]
    assert f"exported {dirs[0]} + {dirs[1]} (sleap-1.x) -> {tmp_path / 'out'}: " in printed, printed
    assert f"rtpose check -m {tmp_path / 'out'}\n" in printed and ".." not in printed, printed
    nets = ExportSpec.load(tmp_path / "out").source["networks"]
    assert [nets["centroid"]["dir"], nets["instance"]["dir"]] == dirs


def test_a_frame_a_few_pixels_smaller_runs_as_on_an_export_of_its_own_size(legacy_export, legacy_pair,
                                                                            minimal_labels_path, tmp_path):
    """What justifies the engines' padding: the graph pads frames to a multiple of
    ``frame_multiple`` itself, so a frame that pads to the exported size gives the poses
    an export at its own size gives."""
    spec = ExportSpec.load(legacy_export)
    m = spec.frame_multiple
    h, w = spec.frame_height - m + 1, spec.frame_width - m // 2
    own_size = tmp_path / "own"
    assert cli(["export", *map(str, legacy_pair), "-o", str(own_size), "--frame-size", f"{h}x{w}",
                "--max-instances", "2"]) == 0
    with VideoReader(minimal_labels_path) as reader:
        frame = reader.read(list(reader.frame_indices)[0])[:h, :w]
    padded = load_engine(legacy_export, "ort-cpu", "fp32").infer(frame)
    exact = load_engine(own_size, "ort-cpu", "fp32").infer(frame)
    assert len(padded) == len(exact) == 2
    np.testing.assert_allclose(padded.points, exact.points, atol=1e-3)
    np.testing.assert_allclose(padded.instance_scores, exact.instance_scores, atol=1e-4)
    with pytest.raises(RtposeError, match=rf"frames are {h - 1}x{w} but the model takes"):
        load_engine(legacy_export, "ort-cpu", "fp32").infer(np.zeros((h - 1, w), np.uint8))


def test_predict_names_the_input_whose_frames_are_too_large(legacy_export, legacy_pair, flies_video_path, tmp_path,
                                                              capsys):
    assert cli(["predict", "-m", str(legacy_export), "-i", str(flies_video_path), "--frames", "0-2", "-o",
                str(tmp_path / "p.slp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flies_video_path}: frames are 1024x1024 but the model "
                                               "takes 384x384"), err
    assert "--frame-size 1024x1024" in err[0] and not (tmp_path / "p.slp").exists()
    # the re-export it suggests is a command to run: the two network folders and the export's --max-instances
    centroid, instance = legacy_pair
    assert f"(rtpose export {centroid} {instance} -o DIR --frame-size 1024x1024 --max-instances 2;" in err[0], err


def test_models_of_different_projects_are_not_paired(legacy_pair, peer_pair, tmp_path, capsys):
    """The minimal centroid (nodes A, B) with the two-node fly multi-class model (head,
    thorax); the fly centroid (anchor part thorax) with the minimal instance model."""
    multiclass = _need(LEGACY / "min_tracks_2node.UNet.topdown_multiclass")
    msg = export_error([str(legacy_pair[0]), str(multiclass), "-o", str(tmp_path / "x"), "--frame-size", "384x384"],
                       capsys)
    assert "(nodes A, B) and" in msg and "(nodes head, thorax) share no skeleton node" in msg
    msg = export_error([str(peer_pair[0]), str(legacy_pair[1]), "-o", str(tmp_path / "x"), "--frame-size", "384x384"],
                       capsys)
    assert msg.startswith(f"error: {peer_pair[0]}: its anchor part 'thorax' is not a node of the instance model")
    assert not (tmp_path / "x").exists()


def test_one_network_alone_names_both_kinds_of_instance_model(tmp_path, capsys):
    multiclass = _need(LEGACY / "min_tracks_2node.UNet.topdown_multiclass")
    msg = export_error([str(multiclass), "-o", str(tmp_path / "x"), "--frame-size", "384x384"], capsys)
    assert "is one network; pass two model directories" in msg
    assert "centered_instance" in msg and "multi_class_topdown" in msg


def test_a_model_without_classes_says_how_many_instances_it_finds(legacy_pair, tmp_path, capsys):
    """Without identity classes the default is one instance a frame: the export says so."""
    assert cli(["export", *map(str, legacy_pair), "-o", str(tmp_path / "one"), "--frame-size", "384x384"]) == 0
    out = capsys.readouterr().out
    assert "no identity classes: the graph finds up to 1 instance(s) a frame; give --max-instances N" in out
    assert "up to 1 instance, " in out  # not "1 instances"


def test_exporting_an_export_says_it_is_one(tmp_path, capsys):
    shipped = Path(__file__).resolve().parent.parent / "models" / "flies13"
    assert cli(["export", str(shipped), "-o", str(tmp_path / "again")]) == 2
    assert capsys.readouterr().err == (f"error: {shipped}: is an export already (rtpose.json): use it as it is "
                                       f"(-m {shipped}); rtpose export takes the trained model directory it came "
                                       "from\n")
    assert not (tmp_path / "again").exists()
