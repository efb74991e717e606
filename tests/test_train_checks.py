"""A training config's values that name something outside the file (labels, nodes, tracks,
frames, a model dir) are refused like any other config error: one line with the file and
the key's line (or the --set that gave the value), the field, the value and what was
meant; exit status 2, before the model directory is touched (rtpose/train/checks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_export import tiny_config, write_config

from rtpose.cli import main as cli


def line_of(path: Path, key: str) -> int:
    """The 1-based line of the first ``key:`` in a YAML file."""
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(f"{key}:"))


def error_line(argv: list[str], capsys) -> str:
    code = cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    return err[-1]


def test_a_misspelt_anchor_part_names_file_line_and_the_node_meant_and_loses_nothing(tmp_path, flies_labels_path,
                                                                                    capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "model.json").write_text("{}")  # an earlier model, which --overwrite would remove before training
    path = write_config(tmp_path, tiny_config(flies_labels_path, out, data__anchor_part="thorx"))
    msg = error_line(["train", str(path), "--overwrite"], capsys)
    assert msg == (f"error: {path}:{line_of(path, 'anchor_part')}: data.anchor_part: 'thorx' is not a node of the "
                   "skeleton (did you mean 'thorax'?)")
    assert (out / "model.json").read_text() == "{}"


def test_an_anchor_part_far_from_every_node_lists_the_nodes(tmp_path, flies_labels_path, capsys):
    path = write_config(tmp_path, tiny_config(flies_labels_path, tmp_path / "m", data__anchor_part="tail"))
    msg = error_line(["train", str(path)], capsys)
    assert msg.startswith(f"error: {path}:{line_of(path, 'anchor_part')}: data.anchor_part: 'tail' is not a node")
    assert all(node in msg for node in ("head", "thorax", "abdomen", "wingL", "eyeR"))


def test_a_missing_labels_file_names_file_line_and_the_file_meant(tmp_path, flies_labels_path, capsys):
    bad = flies_labels_path.with_name("clip.trainvall.slp")
    path = write_config(tmp_path, tiny_config(bad, tmp_path / "m"))
    msg = error_line(["train", str(path)], capsys)
    assert msg == (f"error: {path}:{line_of(path, 'labels')}: data.labels: {bad}: no such file "
                   f"(did you mean '{flies_labels_path}'?)")
    assert not (tmp_path / "m").exists()


def test_a_value_given_by_set_is_blamed_on_the_set(tmp_path, flies_labels_path, capsys):
    path = write_config(tmp_path, tiny_config(flies_labels_path, tmp_path / "m"))
    msg = error_line(["train", str(path), "--set", "data.anchor_part=thorx"], capsys)
    assert msg == (f"error: {path} with --set data.anchor_part=thorx: data.anchor_part: 'thorx' is not a node of the "
                   "skeleton (did you mean 'thorax'?)")


def test_a_labels_file_trained_with_a_bad_set_anchor_part_is_one_line(tmp_path, flies_labels_path, capsys):
    """Before: a ValueError traceback from the step timing of the derived config."""
    msg = error_line(["train", str(flies_labels_path), "--minutes", "1", "--set", "data.anchor_part=heda",
                      "-o", str(tmp_path / "m")], capsys)
    assert msg == ("error: derived config with --set data.anchor_part=heda: data.anchor_part: 'heda' is not a node "
                   "of the skeleton (did you mean 'head'?)")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("key, value, expected", [
    ("data.train_frames", "0-999:10, 1000-", "frame selection '0-999:10, 1000-': '1000-' is not START-END[:STEP]"),
    ("data.train_frames", "3000-4000", "'3000-4000' selects no labelled frame (the labels hold frames 0-1199)"),
    ("data.val_frames", "2000-2100", "'2000-2100' selects no labelled frame (the labels hold frames 0-1199); "),
    ("data.val_frames", "1100-1199", "'1100-1199' takes every frame data.train_frames '1100-1149:10' selects for "
                                     "validation: none left to train on"),
    ("data.classes", ["female", "mael"], "'mael' is not a track of the labels (did you mean 'male'?)"),
    ("data.symmetries", [["wingL", "wingr"]], "'wingr' is not a node of the skeleton (did you mean 'wingR'?)"),
    ("instance.distinct_nodes", {"nodes": ["forelegL4", "forelegr4"]},
     "'forelegr4' is not a node of the skeleton (did you mean 'forelegR4'?)"),
    ("instance.crop_size", 150, "150 must be even and a multiple of the max stride 8 (instance.unet)"),
    ("centroid.reuse_from", "nowhere/model", "nowhere/model/centroid/best.pt not found"),
])
def test_other_values_checked_after_loading_name_file_line_and_field(tmp_path, flies_labels_path, capsys,
                                                                     key, value, expected):
    path = write_config(tmp_path, tiny_config(flies_labels_path, tmp_path / "m", **{key.replace(".", "__"): value}))
    msg = error_line(["train", str(path)], capsys)
    field = {"data.classes": "data.classes.1", "data.symmetries": "data.symmetries.0",
             "instance.distinct_nodes": "instance.distinct_nodes.nodes.1"}.get(key, key)
    assert msg.startswith(f"error: {path}:{line_of(path, field.split('.')[-2 if field[-1].isdigit() else -1])}: "
                          f"{field}: "), msg
    assert expected in msg, msg
    assert not (tmp_path / "m").exists()


def test_a_frame_selection_reaching_outside_the_labels_is_noted_with_what_it_selects(capsys):
    """mice2 labels frames 0-69; val_frames 60-99 trains (it selects 60-69) and says so."""
    from rtpose.data.labels import pooled_user_frames
    from rtpose.data.selection import beyond_labels
    from rtpose.paths import data_dir
    from rtpose.train.config import DataConfig
    from rtpose.train.trainer import _note_selections_beyond_labels

    labels = data_dir() / "mice2" / "labels.trainval.slp"
    _, frames = pooled_user_frames([str(labels)], None)
    labelled = {f.frame_idx for f in frames}
    assert beyond_labels("0-59", labelled) is None and beyond_labels(None, labelled) is None
    _note_selections_beyond_labels(DataConfig(labels=str(labels), val_frames="60-99", train_frames="0-59"), frames)
    captured = capsys.readouterr()
    printed = " ".join((captured.err + captured.out).split())
    assert printed.startswith("note: data.val_frames '60-99' reaches past the last labelled frame (69): it selects "
                              "the labelled frames 60-69"), printed
    assert "train_frames" not in printed


def test_a_run_never_writes_over_its_config_or_into_a_folder_of_other_files(tmp_path, flies_labels_path, capsys):
    """`train FOLDER/config.yaml -o FOLDER` would replace the recipe it trains from (even with --overwrite);
    a folder of a user's files (no trained model) is refused unless --overwrite, as export refuses one."""
    own = tmp_path / "recipe"
    own.mkdir()
    path = write_config(own, tiny_config(flies_labels_path, own), name="config.yaml")
    kept = path.read_text()
    for extra in ([], ["--overwrite"]):
        assert error_line(["train", str(path), *extra], capsys) == (
            f"error: -o {own}: the run would write its config.yaml over {path}, the config it trains from: give "
            "another -o (--overwrite never replaces an input)")
        assert path.read_text() == kept and sorted(p.name for p in own.iterdir()) == ["config.yaml"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    cfg = write_config(tmp_path, tiny_config(flies_labels_path, mine))
    assert error_line(["train", str(cfg)], capsys) == (
        f"error: -o {mine}: a folder holding other files (notes.txt) and no trained model; a training run gets a "
        "folder of its own: give a new or empty one (--overwrite writes into it anyway, replacing only a run's own "
        "files)")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_distinct_nodes_given_as_a_list_says_to_give_a_mapping(tmp_path, flies_labels_path, capsys):
    cfg = tiny_config(flies_labels_path, tmp_path / "m", instance__distinct_nodes=["forelegL4", "forelegR4"])
    path = write_config(tmp_path, cfg)
    msg = error_line(["train", str(path)], capsys)
    assert msg.startswith(f"error: {path}:{line_of(path, 'distinct_nodes')}: instance.distinct_nodes: "), msg
    assert "give a mapping, e.g. {nodes: [forelegL4, forelegR4]" in msg, msg
    assert not (tmp_path / "m").exists()


def test_distinct_nodes_exclusion_below_the_minimum_distance_is_refused(tmp_path, flies_labels_path, capsys):
    rule = {"nodes": ["forelegL4", "forelegR4"], "min_distance_px": 5, "exclusion_px": 2}
    cfg = tiny_config(flies_labels_path, tmp_path / "m", instance__distinct_nodes=rule)
    path = write_config(tmp_path, cfg)
    msg = error_line(["train", str(path)], capsys)
    assert msg.startswith(f"error: {path}:{line_of(path, 'distinct_nodes')}: instance.distinct_nodes: "), msg
    assert "exclusion_px (2) is below min_distance_px (5)" in msg, msg
    assert not (tmp_path / "m").exists()
    # a --set that takes part is named beside the section's line
    rule["exclusion_px"] = 8
    path = write_config(tmp_path, cfg)
    msg = error_line(["train", str(path), "--set", "instance.distinct_nodes.min_distance_px=10"], capsys)
    assert msg.startswith(f"error: {path}:{line_of(path, 'distinct_nodes')} with --set "
                          "instance.distinct_nodes.min_distance_px=10: instance.distinct_nodes: "
                          "exclusion_px (8) is below min_distance_px (10)"), msg
    assert not (tmp_path / "m").exists()
