"""The protocol file of ``rtpose run``: one YAML file that says everything about an experiment.

Validated in two stages, both before any camera, DAQ or socket opens, and both report
``file:line: field.path: message`` for the first problem:

1. ``Protocol`` (pydantic) checks every section's shape, types and units, including the
   ``camera`` and ``daq`` sections (``rtpose.hw`` configs, which also read the device
   files) and the ``features``/``rules``/``outputs`` sections (``rtpose.rules``).
2. ``cross_check`` reads the exported model's ``rtpose.json`` and checks what depends
   on it or on the device files: node and identity names, that each output drives an
   analog output the DAQ's device file has, and that its volts fit that channel's range.

Paths: a relative ``model.export_dir`` is looked up in the working directory, then in
the repository root (the rule ``rtpose.hw`` uses for device files), so the shipped
protocols work from the repository root and from anywhere else; the recording directory
is relative to the working directory. ``${VAR}`` is expanded everywhere and
``${RTPOSE_DATA}`` defaults to the shared data directory.

A full example (as ``experiments/male_approach_replay.yaml``; a path with ``${...}`` is
quoted, since ``{`` opens a YAML flow mapping)::

    name: male_approach_replay           # default: the file name; names the recording
    camera: {backend: replay, path: "${RTPOSE_DATA}/flies13/clip.mp4", fps: 150}
    model: {export_dir: models/flies13, engine: ort-cpu}   # threads: N (default: cores - 1), precision: auto/int8/fp32
    arena: {px_per_mm: 30.3}
    identities: [female, male]           # must be classes of the model
    features:                            # see rtpose.rules
      head_to_abdomen: {distance: [male.head, female.abdomen]}
    rules:
      close: "head_to_abdomen < 2"
    outputs:                             # channel: a DAQ output name
      opto_led: {channel: opto_led, pulse: {rule: close, volts: 5.0, duration_ms: 25, refractory_ms: 500}}
    daq: {backend: sim}                  # device_file: firmware_configs/sim_daq.yaml
    publisher: {enabled: true, address: "tcp://127.0.0.1:5555", topic: poses, hwm: 100,
                preview: {fps: 15, width: 512, quality: 80}}   # preview: null (default) for none
    recorder: {enabled: true, path: "runs/{name}-{time}", export_slp: false}
    safety: {camera_stall_s: 2.0, inference_stall_s: 5.0}   # watchdogs: stop, 0 V, exit 1
    duration: 10                         # seconds; null: until Ctrl-C / SIGTERM / the source ends
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Literal

import attrs
from pydantic import ConfigDict, Field, field_validator

from rtpose.config import ConfigError, StrictModel, describe_errors, load_tree, resolve_path, validate
from rtpose.engine.base import ENGINES
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.hw.config import CAMERA_BACKENDS, DAQ_BACKENDS, CameraConfig, DaqConfig
from rtpose.rules import TriggerSections, reference_errors

# pydantic puts a tagged union's tag into error locations: camera.replay.fps -> camera.fps
_UNIONS = {("camera",): CAMERA_BACKENDS, ("daq",): DAQ_BACKENDS}
_ADDRESS = re.compile(r"^(tcp|ipc|inproc)://\S+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


_Section = StrictModel


class ModelSection(_Section):
    """The exported model (``model.onnx`` + ``rtpose.json``) and the runtime that runs it."""

    export_dir: str
    engine: str = "ort-cpu"
    threads: int | None = Field(None, ge=1, le=256)  # ONNX Runtime intra-op threads; None: all cores but one
    # which graph of the export: auto (ort-cpu runs int8 where it passes its self-check and
    # is faster here, rtpose.engine.graph_choice), int8 or fp32 to force one
    precision: Literal["auto", "int8", "fp32"] = "auto"
    # where the identity head calls two animals the same class, keep the previous frame's
    # identities, matched by position (rtpose/engine/continuity.py); false: the head alone
    identity_continuity: bool = True

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; choose one of {', '.join(ENGINES)}")
        return value


class ArenaSection(_Section):
    px_per_mm: float = Field(gt=0, allow_inf_nan=False)


class PreviewSection(_Section):
    """Downscaled JPEG frames on the publisher's ``preview`` topic, for ``rtpose view``.

    Rate-limited in the loop (one comparison per frame) and encoded by its own thread
    (``rtpose.live.preview``); frames that come while one is being encoded are skipped.
    """

    fps: float = Field(15.0, gt=0, le=1000, allow_inf_nan=False)  # at most this many previews per second
    width: int = Field(512, ge=16, le=8192)  # pixels; height keeps the frame's aspect; never upscaled
    quality: int = Field(80, ge=1, le=100)  # JPEG quality (OpenCV's IMWRITE_JPEG_QUALITY)


class PublisherSection(_Section):
    """ZeroMQ PUB of one msgpack map per processed frame (see ``rtpose.live.publisher``)."""

    enabled: bool = True
    address: str = "tcp://127.0.0.1:5555"  # loopback only unless the protocol says otherwise
    topic: str = Field("poses", min_length=1)
    hwm: int = Field(100, ge=1, le=1_000_000)  # messages held per subscriber before new ones are dropped
    queue_size: int = Field(256, ge=1, le=1_000_000)  # loop -> publisher thread; overflow is counted
    preview: PreviewSection | None = None  # null (default): no preview frames

    @field_validator("topic")
    @classmethod
    def _distinct_topic(cls, value: str) -> str:
        from rtpose.live.publisher import OTHER_TOPICS

        if value in OTHER_TOPICS:
            raise ValueError(f"{value!r} is the name of another topic of the stream ({', '.join(OTHER_TOPICS)})")
        if any(c.isspace() for c in value):
            raise ValueError(f"{value!r}: no spaces (a message is the topic, a space, then the payload)")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a ZeroMQ address like tcp://127.0.0.1:5555")
        from rtpose.live.publisher import port_problem

        problem = port_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class RecorderSection(_Section):
    """Per-frame record written as the run goes (see ``rtpose.live.recorder``)."""

    enabled: bool = True
    # A directory per run; {name} is the protocol name, {time} the start time (YYYYmmdd-HHMMSS).
    path: str = "runs/{name}-{time}"
    export_slp: bool = False  # also write predictions.slp at the end (SLEAP's format)
    queue_size: int = Field(4096, ge=16, le=1_000_000)
    fsync_s: float = Field(1.0, gt=0, le=3600)  # flushed every batch; fsync'd this often

    @field_validator("path")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(name="x", time="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{name}} and {{time}} may appear in braces ({exc})") from None
        return value


class SafetySection(_Section):
    """Watchdogs: either one stops the run (0 V out, exit status 1) with a message saying which."""

    # No frame for this long (including before the first one).
    camera_stall_s: float = Field(2.0, gt=0, le=3600)
    # One frame's inference running this long (a hung runtime or GPU).
    inference_stall_s: float = Field(5.0, gt=0, le=3600)


class Protocol(TriggerSections):
    """Every section of a protocol file. ``features``, ``rules``, ``outputs``: see ``rtpose.rules``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    camera: CameraConfig
    model: ModelSection
    arena: ArenaSection
    identities: list[str] | None = Field(None, min_length=1)
    daq: DaqConfig | None = None
    publisher: PublisherSection = PublisherSection()
    recorder: RecorderSection = RecorderSection()
    safety: SafetySection = SafetySection()
    duration: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _file_name_safe(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("letters, digits, '_', '-' and '.' only (it names the recording directory)")
        return value


@attrs.frozen
class LoadedProtocol:
    """A protocol that passed both stages, with what the checks resolved."""

    protocol: Protocol
    path: Path
    name: str
    export_dir: Path  # resolved
    spec: ExportSpec

    @property
    def identities(self) -> list[str]:
        return list(self.protocol.identities or self.spec.class_names)


def load_protocol(path: str | Path, overrides: Iterable[str] = (), duration: float | None = None) -> LoadedProtocol:
    """Read, override, validate and cross-check a protocol file; opens nothing.

    ``duration`` (``rtpose run --duration``) replaces the file's. Any problem raises
    ``RtposeError("file:line: field: message")``.
    """
    path = Path(path)
    overrides = list(overrides)
    if duration is not None:
        overrides.append(f"duration={duration!r}")
    tree, lines = load_tree(path, overrides)
    if duration is not None:  # an error names the option the user typed
        lines[("duration",)] = f"--duration {duration:g}"
    protocol = validate(Protocol, tree, path, lines, unions=_UNIONS)
    export_dir, spec, problems = cross_check(protocol)
    if problems:
        errors = [{"loc": loc, "msg": msg, "type": "cross_check"} for loc, msg in problems]
        raise ConfigError(describe_errors(errors, path, lines))
    assert export_dir is not None and spec is not None
    return LoadedProtocol(protocol, path, protocol.name or _default_name(path), export_dir, spec)


def cross_check(protocol: Protocol) -> tuple[Path | None, ExportSpec | None, list[tuple[tuple, str]]]:
    """Stage 2: (resolved export dir, its spec, problems as (field path, message))."""
    problems: list[tuple[tuple, str]] = []
    try:
        export_dir = resolve_path(protocol.model.export_dir)
        spec = ExportSpec.load(export_dir)
    except RtposeError as exc:
        return None, None, [(("model", "export_dir"), str(exc))]
    classes = list(spec.class_names)
    for i, identity in enumerate(protocol.identities or []):
        if identity not in classes:
            held = f"its classes: {', '.join(classes)}" if classes else "it has no identity classes: leave identities out"
            problems.append((("identities", i), f"'{identity}' is not a class of the model ({held})"))
    problems += reference_errors(protocol, spec.node_names, classes)
    problems += _output_channel_problems(protocol)
    return export_dir, spec, problems


def _output_channel_problems(protocol: Protocol) -> list[tuple[tuple, str]]:
    if not protocol.outputs:
        return []
    if protocol.daq is None:
        name = next(iter(protocol.outputs))
        return [(("outputs", name, "channel"), "outputs need a daq section to write to")]
    device = protocol.daq.device
    problems = []
    for name, output in protocol.outputs.items():
        if output.channel not in device.ao:
            problems.append((("outputs", name, "channel"),
                             f"the DAQ ({Path(protocol.daq.device_file).name}) has no analog output "
                             f"'{output.channel}'; it has {', '.join(device.ao)}"))
            continue
        low, high = device.ao[output.channel].range_volts
        wanted = [output.pulse.volts] if output.pulse is not None else list(output.follow.volts_range)
        for volts in wanted:
            if not low <= volts <= high:
                key = "pulse.volts" if output.pulse is not None else "follow.to"
                problems.append((("outputs", name, *key.split(".")),
                                 f"{volts:g} V is outside {output.channel}'s range [{low:g}, {high:g}] V"))
                break
    return problems


def _default_name(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return stem if _NAME.match(stem) else f"run_{stem}"
