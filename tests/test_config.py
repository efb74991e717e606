"""The configuration layer: protocols, training configs and device files report errors the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtpose.cli import main as cli_main
from rtpose.config import ConfigError, apply_overrides, expand_vars, load_config, load_yaml, resolve_path
from rtpose.errors import RtposeError
from rtpose.hw import parse_daq_config
from rtpose.hw.firmware import DaqDevice, SpinnakerDevice, load_device_file
from rtpose.live.protocol import load_protocol
from rtpose.paths import REPO_ROOT
from rtpose.train.config import TrainConfig

SIM_DAQ = REPO_ROOT / "firmware_configs" / "sim_daq.yaml"


def _misspelt_device_file(tmp_path: Path) -> tuple[Path, int]:
    """The shipped sim DAQ file with ``range_volts`` of ``opto_led`` misspelt; returns it and that line."""
    lines = SIM_DAQ.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "range_volts: [0.0, 5.0]" in line)
    lines[index] = lines[index].replace("range_volts", "range_volt")
    path = tmp_path / "misspelt_daq.yaml"
    path.write_text("".join(lines))
    return path, index + 1


def test_a_misspelt_key_in_a_device_file_names_its_line(tmp_path):
    path, line = _misspelt_device_file(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_device_file(path, DaqDevice)
    message = str(error.value)
    assert message == f"{path}:{line}: ao.opto_led.range_volt: unknown key (did you mean 'range_volts'?)"
    assert "\n" not in message
    # inside a protocol's daq section, the same line behind the protocol's field
    with pytest.raises(RtposeError) as error:
        parse_daq_config({"backend": "sim", "device_file": str(path)})
    assert str(error.value).startswith(f"daq.device_file: {path}:{line}: ao.opto_led.range_volt: unknown key")


def test_a_bad_device_file_stops_rtpose_run_with_one_line(tmp_path, capsys):
    path, line = _misspelt_device_file(tmp_path)
    protocol = REPO_ROOT / "experiments" / "male_approach_replay.yaml"
    code = cli_main(["run", str(protocol), "--set", f"daq.device_file={path}",
                     "--set", f"recorder.path={tmp_path / 'never'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(f"error: {protocol} with --set daq.device_file={path}:")
    assert f"daq.device_file: {path}:{line}: ao.opto_led.range_volt: unknown key" in err
    assert not (tmp_path / "never").exists()


def test_device_file_kind_and_yaml_errors_name_the_line(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{SIM_DAQ}:5: kind is 'daq', but a camera device file is needed here$"):
        load_device_file(SIM_DAQ, SpinnakerDevice)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: daq\nao: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{broken}:\d: not valid YAML"):
        load_device_file(broken, DaqDevice)
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'absent.yaml'}: no such device file$"):
        load_device_file(tmp_path / "absent.yaml", DaqDevice)
    binary = tmp_path / "labels.slp"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ConfigError, match=rf"^{binary}: not a text file, so not a YAML device file$"):
        load_device_file(binary, DaqDevice)
    listing = tmp_path / "list.yaml"
    listing.write_text("- kind: daq\n")
    with pytest.raises(ConfigError, match="a device file is a mapping of keys at the top level, got list"):
        load_device_file(listing, DaqDevice)


def test_training_configs_and_protocols_word_errors_like_device_files(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("data:\n  labels: x.slp\ninstance:\n  optim:\n    lr: 0.001\n    bacth_size: 4\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, TrainConfig)
    assert str(error.value) == f"{config}:6: instance.optim.bacth_size: unknown key (did you mean 'batch_size'?)"
    with pytest.raises(ConfigError) as error:
        load_config(config, TrainConfig, ["instance.optim.lr=-1", "instance.optim.bacth_size=null"])
    # the typo is reported first, then the count of the rest; the --set that wrote it is named
    assert str(error.value) == (f"{config} with --set instance.optim.bacth_size=null: instance.optim.bacth_size: "
                                "unknown key (did you mean 'batch_size'?) (and 1 more problem: instance.optim.lr)")
    # each of the rest is named by its field, the first three of them
    with pytest.raises(ConfigError) as error:
        load_config(config, TrainConfig, ["instance.optim.lr=-1", "instance.optim.batch_size=0", "seed=x",
                                          "instance.sigma=-2", "centroid.sigma=-1"])
    assert str(error.value).endswith("(and 5 more problems: centroid.sigma, instance.sigma, "
                                     "instance.optim.lr ...)"), str(error.value)
    # a bad value given by --set is blamed on the --set, not on the file's line it replaced
    config.write_text("data:\n  labels: x.slp\ninstance:\n  optim:\n    lr: 0.001\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, TrainConfig, ["instance.optim.lr=fast"])
    assert str(error.value).startswith(f"{config} with --set instance.optim.lr=fast: instance.optim.lr: ")
    protocol = tmp_path / "protocol.yaml"
    text = (REPO_ROOT / "experiments" / "male_approach_replay.yaml").read_text()
    protocol.write_text(text.replace("  px_per_mm: 30.3", "  px_per_mm: 30.3\n  px_per_inch: 770"))
    line = text.splitlines().index("  px_per_mm: 30.3") + 2
    with pytest.raises(ConfigError, match=rf"^{protocol}:{line}: arena.px_per_inch: unknown key$"):
        load_protocol(protocol)


def test_variables_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("RTPOSE_TEST_DIR", str(tmp_path))
    assert expand_vars("${RTPOSE_TEST_DIR}/a") == expand_vars("$RTPOSE_TEST_DIR/a") == f"{tmp_path}/a"
    assert expand_vars("costs $5 and a $ sign") == "costs $5 and a $ sign"
    assert expand_vars("~/x") == str(Path.home() / "x")
    monkeypatch.delenv("RTPOSE_DATA", raising=False)
    assert Path(expand_vars("${RTPOSE_DATA}")).resolve() == (REPO_ROOT.parent / "shared" / "data").resolve()
    with pytest.raises(ConfigError, match=r"environment variable RTPOSE_UNSET_X in '\$RTPOSE_UNSET_X/a' is not set"):
        expand_vars("$RTPOSE_UNSET_X/a")
    config = tmp_path / "train.yaml"
    config.write_text("data:\n  labels: ${RTPOSE_UNSET_X}/x.slp\n")
    with pytest.raises(ConfigError, match=rf"^{config}:2: data.labels: environment variable RTPOSE_UNSET_X"):
        load_config(config, TrainConfig)
    # relative: the working directory first, then the repository
    monkeypatch.chdir(tmp_path)
    assert resolve_path("firmware_configs/sim_daq.yaml") == SIM_DAQ
    (tmp_path / "firmware_configs").mkdir()
    (tmp_path / "firmware_configs" / "sim_daq.yaml").write_text(SIM_DAQ.read_text())
    assert resolve_path("firmware_configs/sim_daq.yaml") == tmp_path / "firmware_configs" / "sim_daq.yaml"
    with pytest.raises(ConfigError, match=rf"^nope.yaml: not found in {tmp_path} or {REPO_ROOT}$"):
        resolve_path("nope.yaml")


def test_overrides_set_nested_keys_and_list_items(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a:\n  b: 1\n  items: [1, 2]\n")
    tree, lines = load_yaml(path)
    assert lines == {("a",): 1, ("a", "b"): 2, ("a", "items"): 3}
    apply_overrides(tree, ["a.c.d=5", "a.items.1=x", "e=[1, 2]"])
    assert tree == {"a": {"b": 1, "items": [1, "x"], "c": {"d": 5}}, "e": [1, 2]}
    with pytest.raises(ConfigError, match="--set 'a.items.5.x=1': a.items.5.x goes through a value that is not a section"):
        apply_overrides(tree, ["a.items.5.x=1"])
    with pytest.raises(ConfigError, match=r"'duration': expected KEY=VALUE, KEY dotted through its sections "
                                          r"\(e.g. duration=VALUE\)"):  # the example is the key given
        apply_overrides(tree, ["duration"])


def test_the_old_yamlconf_module_still_imports():
    from rtpose import yamlconf

    assert yamlconf.load_config is load_config and yamlconf.load_yaml is load_yaml


def test_a_misspelt_optional_top_level_key_is_named_as_a_typo(tmp_path):
    """``rules`` may be left out, so no 'missing' error points at it: the model's own keys do."""
    text = (REPO_ROOT / "experiments" / "male_approach_replay.yaml").read_text()
    assert "\nrules:" in text
    bad = tmp_path / "protocol.yaml"
    bad.write_text(text.replace("\nrules:", "\nrulse:"))
    line = text[: text.index("\nrules:")].count("\n") + 2
    with pytest.raises(ConfigError) as info:
        load_protocol(bad)
    assert str(info.value).startswith(f"{bad}:{line}: rulse: unknown key (did you mean 'rules'?)")


def test_a_misspelt_optional_nested_key_is_named_as_a_typo():
    """Nested optional keys (``instance.crop_size``, ``instance.optim.lr``) get the same hint, from a --set too."""
    from rtpose.train.config import TrainConfig

    config = REPO_ROOT / "experiments" / "train" / "flies13.yaml"
    for override, expected in (("instance.crop_sise=128", "instance.crop_sise: unknown key (did you mean 'crop_size'?)"),
                               ("instance.optim.lrr=1", "instance.optim.lrr: unknown key (did you mean 'lr'?)"),
                               ("instance.zzz=1", "instance.zzz: unknown key")):
        with pytest.raises(ConfigError) as info:
            load_config(config, TrainConfig, [override])
        assert str(info.value).endswith(expected), str(info.value)


@pytest.mark.parametrize("command, config, override, hint", [
    # fps is in the file: a --set of its look-alike meant to replace it
    ("run", "male_approach_replay.yaml", "camera.fsp=60", "camera.fsp: unknown key (did you mean 'fps'?)"),
    ("calibrate", "male_approach_replay.yaml", "camera.fsp=60", "camera.fsp: unknown key (did you mean 'fps'?)"),
    ("run", "male_approach_replay.yaml", "daq.bakend=sim", "daq.bakend: unknown key (did you mean 'backend'?)"),
    ("run", "male_approach_replay.yaml", "camera.replay.fps=60", "camera.replay: unknown key"),
    # a section only the --set names is blamed on the --set, not on its parent's line
    ("train", "train/flies13.yaml", "centroid.optm.lr=1", "centroid.optm: unknown key (did you mean 'optim'?)"),
])
def test_a_misspelt_key_in_a_set_path_gets_a_did_you_mean(tmp_path, command, config, override, hint):
    """``--set`` paths on run, calibrate and train get the hint a config file's typo gets,
    through a tagged union (camera, daq) too: one line, exit status 2."""
    import subprocess
    import sys

    path = REPO_ROOT / "experiments" / config
    extra = ["-o", str(tmp_path / "model")] if command == "train" else []
    done = subprocess.run([sys.executable, "-m", "rtpose", command, str(path), *extra, "--set", override],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {path} with --set {override}: {hint}"
    assert not (tmp_path / "model").exists()


def test_a_backwards_frame_range_says_so():
    from rtpose.data.video import parse_frame_range

    with pytest.raises(RtposeError, match=r"frame range '96-70' runs backwards: write the first frame first \(70-96\)"):
        parse_frame_range("96-70", 97)
    with pytest.raises(RtposeError, match="is outside the video: valid frames are 0-96"):
        parse_frame_range("90-5000", 97)
    assert parse_frame_range("70-96", 97) == range(70, 97)
    with pytest.raises(RtposeError, match=r"'1270-129' runs backwards: a digit missing from its last frame\? or "
                                          r"write the first frame first \(129-1270\)"):
        parse_frame_range("1270-129", 1500)


def test_rtpose_data_written_with_dots_is_folded(monkeypatch, flies_video_path):
    """The README's `export RTPOSE_DATA=$PWD/../shared/data` must not print paths full of `..`."""
    from rtpose.paths import data_dir

    data = flies_video_path.parent.parent
    monkeypatch.setenv("RTPOSE_DATA", str(data / "flies13" / ".." / ".." / data.name))
    assert data_dir() == data and ".." not in str(data_dir())


def test_a_top_level_key_that_lives_in_sections_names_them():
    """`--set fps=100` on a protocol (or `optim.lr` on a training config) is a key one level down."""
    from rtpose.live.protocol import load_protocol

    repo = Path(__file__).resolve().parent.parent
    with pytest.raises(ConfigError, match=r"--set fps=100: fps: unknown key here \(it is under camera.fps, "
                                          r"publisher.preview.fps\)$"):
        load_protocol(repo / "experiments" / "male_approach_replay.yaml", ["fps=100"])
    from rtpose.config import paths_of_key
    from rtpose.train.config import TrainConfig

    assert paths_of_key(TrainConfig, "optim") == ["centroid.optim", "instance.optim"]


def test_a_duplicate_key_is_an_error_naming_both_lines(tmp_path):
    """YAML keeps the last of two equal keys without a word (an override appended while editing)."""
    path = tmp_path / "p.yaml"
    path.write_text("duration: 10\ncamera:\n  fps: 150\n  fps: 60\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4: not valid YAML \(duplicate key 'fps' \(first at line 3\)\)$"):
        load_yaml(path)
