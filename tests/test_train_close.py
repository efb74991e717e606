"""Training for close encounters: pooled label files, sample weighting toward touching
animals, online hard keypoint mining, a reused centroid net and the validation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtpose.cli import main as cli
from rtpose.data.labels import pooled_user_frames
from rtpose.train.config import DataConfig, HardKeypointConfig
from rtpose.train.trainer import close_weights, confmap_loss, hard_keypoint_loss
import yaml

TINY_UNET = {"filters": 8, "filters_rate": 2.0, "down_blocks": 2, "up_blocks": 2, "stem_stride": 2}


def tiny_config(out: Path, **data) -> dict:
    return {
        "data": {"anchor_part": "thorax", **data},
        "centroid": {"input_scale": 0.125, "sigma": 1.5, "unet": TINY_UNET,
                     "optim": {"lr": 1e-3, "batch_size": 2, "min_steps_per_epoch": 6, "max_epochs": 2}},
        "instance": {"crop_size": 144, "sigma": 2.5, "unet": TINY_UNET,
                     "hard_keypoints": {"ratio": 2.0, "min_keypoints": 2},
                     "optim": {"lr": 1e-3, "batch_size": 4, "min_steps_per_epoch": 4, "max_epochs": 2}},
        "output": str(out),
        "precision": "fp32",
    }


def write_config(tmp_path: Path, cfg: dict, name: str = "train.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_hard_keypoint_term_by_hand():
    target = torch.zeros(1, 4, 2, 2)
    pred = torch.zeros(1, 4, 2, 2)
    pred[0, 0] = 0.1  # per-node MSE: 0.01, 0.02 ** 2 ... below
    pred[0, 1] = 0.2
    pred[0, 2] = 0.4
    pred[0, 3] = 0.8
    per_node = torch.tensor([0.01, 0.04, 0.16, 0.64])
    hk = HardKeypointConfig(ratio=2.0, min_keypoints=1, max_keypoints=None, loss_scale=5.0)
    # every node but the easiest is at least twice as hard: 3 hard nodes
    expected = 5.0 * (0.04 + 0.16 + 0.64) / 4
    assert hard_keypoint_loss(pred, target, 0.0, hk).item() == pytest.approx(expected, rel=1e-5)
    capped = HardKeypointConfig(ratio=2.0, min_keypoints=1, max_keypoints=1, loss_scale=5.0)
    assert hard_keypoint_loss(pred, target, 0.0, capped).item() == pytest.approx(5.0 * 0.64 / 4, rel=1e-5)
    strict = HardKeypointConfig(ratio=100.0, min_keypoints=2, loss_scale=1.0)  # none that hard: the 2 hardest
    assert hard_keypoint_loss(pred, target, 0.0, strict).item() == pytest.approx((0.16 + 0.64) / 4, rel=1e-5)
    assert confmap_loss(pred, target, 0.0).item() == pytest.approx(per_node.mean().item(), rel=1e-5)
    assert hard_keypoint_loss(target, target, 50.0, hk).item() == 0.0


def test_close_weights():
    data = DataConfig(labels="x.slp", close_weight=4.0, close_distance=1.0)
    p = close_weights(np.array([50.0, 99.0, 101.0, np.inf]), 100.0, data)
    assert p.tolist() == pytest.approx([4 / 10, 4 / 10, 1 / 10, 1 / 10])
    assert close_weights(np.array([50.0]), 100.0, DataConfig(labels="x.slp")) is None


def test_pooled_label_files(flies_labels_path, flies_close_labels_path, capsys):
    labels, frames = pooled_user_frames([flies_labels_path, flies_close_labels_path])
    idx = [f.frame_idx for f in frames]
    assert len(frames) == 1300 and idx[:1] == [0] and idx[-1] == 1299
    assert [t.name for t in labels.tracks] == ["female", "male"]
    with pytest.raises(Exception, match="labeled in"):
        pooled_user_frames([flies_close_labels_path, flies_close_labels_path])


@pytest.fixture(scope="module")
def trained_close(tmp_path_factory, flies_labels_path, flies_close_labels_path):
    tmp = tmp_path_factory.mktemp("close")
    cfg = tiny_config(tmp / "model", labels=[str(flies_labels_path), str(flies_close_labels_path)],
                      train_frames="1100-1149:10, 1200-1269:10", val_frames="1190-1199:5, 1290-1299:5",
                      close_weight=4.0)
    assert cli(["train", str(write_config(tmp, cfg))]) == 0
    return tmp / "model", cfg, tmp


def test_two_label_files_train_and_leave_a_validation_report(trained_close, flies_close_labels_path):
    model, _, _ = trained_close
    info = json.loads((model / "model.json").read_text())
    assert info["label_files"][1] == str(flies_close_labels_path)
    assert info["train_frames"] == 12 and info["val_frames"] == 4 and info["animal_size_px"] > 0
    log = (model / "instance" / "training_log.csv").read_text().splitlines()[0]
    assert "train_hard_keypoints" in log
    # the export-based report.json scores the first file's block and says where the rest are
    final = json.loads((model / "report.json").read_text())
    assert final["labels_file"] == "clip.trainval.slp" and final["frame_range"] == "1190-1195"
    assert final["other_labels"].startswith("clip.close.slp: its validation frames are scored, with these, in the")
    report = json.loads((model / "validation_report.json").read_text())
    assert report["n_gt"] == 8 and report["frame_range"] == [1190, 1295]
    # the whole-pipeline table names its frames and files
    assert report["ground_truth"] == "validation frames 1190, 1195, 1290, 1295 (4) of clip.trainval.slp, clip.close.slp"
    assert sum(b["n_gt"] for b in report["by_proximity"].values()) == 8
    assert report["proximity"]["anchor_part"] == "thorax"
    assert report["proximity"]["animal_size_px"] == pytest.approx(info["animal_size_px"], abs=0.01)


def test_reused_centroid_net_is_the_source_one(trained_close, tmp_path, capsys):
    model, cfg, _ = trained_close
    cfg = json.loads(json.dumps(cfg))
    cfg["centroid"]["reuse_from"] = str(model)
    cfg["output"] = str(tmp_path / "again")
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 0
    src = torch.load(model / "centroid" / "best.pt", weights_only=False)
    dst = torch.load(tmp_path / "again" / "centroid" / "best.pt", weights_only=False)
    assert all(torch.equal(src["state_dict"][k], dst["state_dict"][k]) for k in src["state_dict"])
    assert "reused from" in json.loads((tmp_path / "again" / "model.json").read_text())["centroid"]["stopped"]
    # the instance net starts from its own seed's weights and trains as in the full run, so
    # experiments that reuse a centroid net compare with full runs
    src = torch.load(model / "instance" / "best.pt", weights_only=False)["state_dict"]
    dst = torch.load(tmp_path / "again" / "instance" / "best.pt", weights_only=False)["state_dict"]
    assert all(torch.allclose(src[k].float(), dst[k].float(), atol=1e-6) for k in src)
    capsys.readouterr()
    cfg["centroid"]["unet"] = {**cfg["centroid"]["unet"], "filters": 16}
    cfg["output"] = str(tmp_path / "other")
    assert cli(["train", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {tmp_path / 'train.yaml'}:") and "centroid.reuse_from: " in err[-1]
    assert "architecture" in err[-1] and not (tmp_path / "other").exists()  # refused before training


def test_cpu_budget_clock_counts_work_not_waiting():
    import time

    from rtpose.train.loop import budget_clock

    clock = budget_clock("cpu")
    a = clock()
    time.sleep(0.3)
    b = clock()
    assert b - a < 0.1  # sleeping costs no CPU
    x = 0
    while clock() - b < 0.05:  # burns CPU, so the clock moves on
        x += 1
    assert x > 0 and budget_clock("wall") is time.monotonic


def test_config_hash_names_the_recipe_not_the_machine(tmp_path):
    """The model card's config hash is the same for the shipped YAML on any machine and
    run folder, and changes with any training setting."""
    from rtpose.train.config import TrainConfig
    from rtpose.train.trainer import config_hash

    text = Path("experiments/train/flies13_close.yaml").read_text()
    tree = yaml.safe_load(text)
    here = TrainConfig.model_validate(tree)
    tree["output"] = str(tmp_path / "elsewhere")
    tree["data"]["labels"] = [str(Path("/other/machine/data") / Path(p).name) for p in tree["data"]["labels"]]
    there = TrainConfig.model_validate(tree)
    assert config_hash(here) == config_hash(there)
    tree["instance"]["sigma"] = 2.0
    assert config_hash(TrainConfig.model_validate(tree)) != config_hash(there)
