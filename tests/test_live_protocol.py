"""Protocol files: every mistake is one line naming the file, the line and the field, before anything opens."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from rtpose.cli import main as cli_main
from rtpose.errors import RtposeError
from rtpose.live.protocol import load_protocol

REPO = Path(__file__).resolve().parent.parent

PROTOCOL = """\
name: checks
camera:
  backend: replay
  path: {video}
  fps: 150
model:
  export_dir: models/flies13
arena:
  px_per_mm: 30.3
identities: [female, male]
features:
  head_to_abdomen: {{distance: [male.head, female.abdomen]}}
  facing: {{angle: female.thorax, relative_to: male, from: thorax, to: head}}
rules:
  approach: "head_to_abdomen < 2 and abs(facing) < 25"
outputs:
  opto_led:
    channel: opto_led
    pulse: {{rule: approach, volts: 5.0, duration_ms: 25, refractory_ms: 500}}
daq:
  backend: sim
publisher:
  address: tcp://127.0.0.1:{port}
recorder:
  path: {runs}/run
duration: 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def write(tmp_path, flies_video_path):
    """Write the protocol with one line replaced (or appended) and return its path."""
    port = free_port()

    def make(replace: tuple[str, str] | None = None, append: str = "") -> Path:
        text = PROTOCOL.format(video=flies_video_path, port=port, runs=tmp_path / "runs")
        if replace is not None:
            assert replace[0] in text, replace[0]
            text = text.replace(replace[0], replace[1])
        path = tmp_path / "protocol.yaml"
        path.write_text(text + textwrap.dedent(append))
        return path

    make.port = port
    return make


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(RtposeError) as info:
        load_protocol(path, overrides)
    return str(info.value)


def test_the_valid_protocol_loads_with_the_model_it_names(write):
    loaded = load_protocol(write())
    assert loaded.name == "checks" and loaded.identities == ["female", "male"]
    assert loaded.export_dir == (REPO / "models" / "flies13").resolve()
    assert "head" in loaded.spec.node_names and loaded.protocol.duration == 2


def test_unknown_key_names_field_and_line(write):
    path = write(replace=("  fps: 150\n", "  fps: 150\n  exposure: 3\n"))
    assert error_of(path) == f"{path}:6: camera.exposure: unknown key"


def test_bad_type_names_field_and_line(write):
    path = write(replace=("px_per_mm: 30.3", "px_per_mm: thirty"))
    message = error_of(path)
    assert message.startswith(f"{path}:9: arena.px_per_mm: ") and "number" in message


def test_model_precision_is_auto_int8_or_fp32(write):
    assert load_protocol(write()).protocol.model.precision == "auto"
    forced = write(replace=("  export_dir: models/flies13\n", "  export_dir: models/flies13\n  precision: fp32\n"))
    assert load_protocol(forced).protocol.model.precision == "fp32"
    path = write(replace=("  export_dir: models/flies13\n", "  export_dir: models/flies13\n  precision: fp16\n"))
    message = error_of(path)
    assert message.startswith(f"{path}:8: model.precision: ") and "'int8'" in message, message


def test_bad_camera_backend_names_field_and_line(write):
    path = write(replace=("backend: replay", "backend: webcam"))
    message = error_of(path)
    assert message.startswith(f"{path}:3: camera.backend: unknown backend 'webcam'")


def test_rule_with_an_unknown_feature_names_the_rule_and_line(write):
    path = write(replace=("abs(facing) < 25", "abs(facin) < 25"))
    message = error_of(path)
    assert message.startswith(f"{path}:15: rules.approach: ") and "facin" in message


def test_unknown_node_is_caught_against_the_model(write):
    path = write(replace=("female.abdomen", "female.abdomn"))
    message = error_of(path)
    assert message.startswith(f"{path}:12: features.head_to_abdomen.distance.1: unknown node 'abdomn'")


def test_unknown_identity_is_caught_against_the_model(write):
    path = write(replace=("relative_to: male", "relative_to: mael"))
    assert error_of(path).startswith(f"{path}:13: features.facing.relative_to: unknown identity 'mael'")
    path = write(replace=("identities: [female, male]", "identities: [female, male, larva]"))
    assert error_of(path).startswith(f"{path}:10: identities.2: 'larva' is not a class of the model")


def test_output_channel_missing_from_the_daq_device_file(write):
    path = write(replace=("channel: opto_led", "channel: ao7"))
    message = error_of(path)
    assert message.startswith(f"{path}:18: outputs.opto_led.channel: the DAQ (sim_daq.yaml) has no analog output 'ao7'")


def test_pulse_volts_beyond_the_channel_range(write):
    path = write(replace=("volts: 5.0", "volts: 7.5"))
    assert error_of(path).startswith(f"{path}:19: outputs.opto_led.pulse.volts: 7.5 V is outside opto_led's range")


def test_missing_model_dir_names_field_and_line(write):
    path = write(replace=("export_dir: models/flies13", "export_dir: models/nope"))
    assert error_of(path).startswith(f"{path}:7: model.export_dir: models/nope: not found")


def test_a_model_dir_one_typo_away_and_a_folder_as_camera_path_are_named(write, flies_video_path):
    path = write(replace=("export_dir: models/flies13", "export_dir: models/flies31"))
    assert error_of(path).endswith(f"models/flies31: not found in {Path.cwd()}"
                                   + (f" or {REPO}" if Path.cwd() != REPO else "")
                                   + f" (did you mean '{REPO / 'models' / 'flies13'}'?)")
    path = write(replace=(str(flies_video_path), str(flies_video_path.parent)))
    assert error_of(path).endswith(f"camera.path: {flies_video_path.parent}: is a folder; camera.path names one video "
                                   "file: it holds clip.mp4")


def test_overrides_and_duration_replace_file_values(write):
    loaded = load_protocol(write(), ["camera.fps=60", "publisher.enabled=false"], )
    assert loaded.protocol.camera.fps == 60 and not loaded.protocol.publisher.enabled
    assert load_protocol(write(), [], duration=0.5).protocol.duration == 0.5
    assert "duration" in error_of(write(), ["duration=-1"])
    with pytest.raises(RtposeError, match=r"with --duration -3: duration: Input should be greater than 0"):
        load_protocol(write(), [], duration=-3.0)  # the option the user typed, not a --set


def test_a_bad_protocol_opens_nothing(write, tmp_path, capsys):
    """`rtpose run` exits 2 with one line; no socket was bound, no recording written."""
    path = write(replace=("channel: opto_led", "channel: ao7"))
    assert cli_main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and "outputs.opto_led.channel" in err
    assert not (tmp_path / "runs").exists()
    with socket.socket() as s:  # the publisher's port is still free
        s.bind(("127.0.0.1", write.port))


def test_shipped_protocols_validate():
    for name in ("male_approach_replay", "male_approach_optogenetics", "replay_dry_run"):
        loaded = load_protocol(REPO / "experiments" / f"{name}.yaml")
        assert loaded.name == name
    rig = load_protocol(REPO / "experiments" / "male_approach_optogenetics.yaml").protocol
    assert rig.camera.backend == "spinnaker" and rig.daq.backend == "nidaqmx"
    pulse = rig.outputs["opto_led"].pulse
    assert (pulse.volts, pulse.duration_ms) == (5.0, 25)
    assert rig.rules["male_approach"] == load_protocol(
        REPO / "experiments" / "male_approach_replay.yaml").protocol.rules["male_approach"]
