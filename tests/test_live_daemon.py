"""The live daemon on the real fly clip, the real model, the sim DAQ and real sockets.

Every exit path must end with 0 V on every analog output and a readable recording:
end of duration, SIGINT, SIGTERM, an exception in a thread, a camera that stops
delivering, and (for the recording) SIGKILL. Rules that must fire regardless of the
model's quality use the constant rule ``1 < 2``; everything else holds for any decent
model of the flies13 format.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest
import yaml
import zmq

from rtpose import clock
from rtpose.data.video import VideoReader
from rtpose.engine.base import Engine, load_engine
from rtpose.hw import CameraTimeout, make_daq
from rtpose.hw.replay import ReplayCamera
from rtpose.hw.sim_daq import SimDaq
from rtpose.live.daemon import Daemon
from rtpose.live.protocol import load_protocol
from rtpose.live.publisher import split_message
from rtpose.cli import main as rtpose_cli
from rtpose.live.recorder import export_slp, iter_records, offline_rule_agreement, read_recording

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "flies13"
PAPER_RULE = "head_to_abdomen < 2 and abs(female_in_front_of_male) < 25 and abs(male_behind_female) > 145"
MESSAGE_KEYS = {"frame", "t", "points", "point_scores", "identity", "features", "rules", "volts"}
TIME_KEYS = {"exposure", "arrival", "infer_start", "infer_end", "output"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_protocol(directory: Path, video: Path, **changes) -> Path:
    """A protocol on the fly clip: the paper's rule, a pulse on a rule that always holds, a follow output."""
    protocol = {
        "name": "test",
        "camera": {"backend": "replay", "path": str(video), "fps": 150, "frames": "0-599"},
        "model": {"export_dir": str(MODEL)},
        "arena": {"px_per_mm": 30.3},
        "identities": ["female", "male"],
        "features": {
            "head_to_abdomen": {"distance": ["male.head", "female.abdomen"]},
            "female_in_front_of_male": {"angle": "female.thorax", "relative_to": "male", "from": "thorax",
                                        "to": "head"},
            "male_behind_female": {"angle": "male.thorax", "relative_to": "female", "from": "thorax", "to": "head"},
            "thorax_distance": {"distance": ["male.thorax", "female.thorax"]},
            "male_speed": {"speed": "male.thorax"},
        },
        "rules": {"male_approach": PAPER_RULE, "always": "1 < 2", "close": "thorax_distance < 3",
                  "moving": "male_speed > 0.5"},
        "outputs": {
            "opto_led": {"channel": "opto_led",
                         "pulse": {"rule": "always", "volts": 5.0, "duration_ms": 25, "refractory_ms": 100}},
            "distance_signal": {"channel": "calibration",
                                "follow": {"feature": "thorax_distance", "from": [0, 20], "to": [1, 5]}},
        },
        "daq": {"backend": "sim"},
        "publisher": {"address": f"tcp://127.0.0.1:{free_port()}"},
        "recorder": {"path": str(directory / "run")},
        "safety": {"camera_stall_s": 2.0},
        "duration": 1.5,
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            protocol[section] = {**protocol[section], field: value}
        else:
            protocol[section] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "protocol.yaml"
    path.write_text(yaml.safe_dump(protocol, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def engine():
    engine = load_engine(MODEL, "ort-cpu")
    yield engine
    engine.close()


def run_daemon(path: Path, engine, camera=None, **options):
    """Run in-process with the shared engine and a sim DAQ we keep open to inspect afterwards."""
    loaded = load_protocol(path)
    daq = make_daq(loaded.protocol.daq)
    daemon = Daemon(loaded, engine=engine, daq=daq, camera=camera, **options)
    return daemon, daemon.run(), daq


def assert_all_outputs_at_zero(daq, since: float) -> None:
    """Every analog output's last write is 0 V, made at or after ``since``."""
    assert set(daq.ao_values()) == {"opto_led", "calibration"}
    assert all(v == 0.0 for v in daq.ao_values().values()), daq.ao_values()
    for channel in daq.ao_channels:
        t, volts = daq.ao_history(channel)
        assert volts[-1] == 0.0 and t[-1] >= since, (channel, t[-3:], volts[-3:])


def was_driven(daq, channel: str) -> bool:
    return bool(np.any(daq.ao_history(channel)[1] != 0.0))


# --- one ordinary run, looked at from every side ----------------------------------------


class Subscriber(threading.Thread):
    """Collects published messages until stopped."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address, self.messages, self.stop = address, [], threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"poses ")
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RECONNECT_IVL, 10)  # the daemon binds after we connect
        sub.connect(self.address)
        self.connected.set()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while not self.stop.is_set():
            if poller.poll(50):
                self.messages.append(list(split_message(sub.recv())))
        sub.close()
        context.term()


@pytest.fixture(scope="module")
def ordinary_run(tmp_path_factory, flies_video_path, engine):
    directory = tmp_path_factory.mktemp("ordinary")
    path = write_protocol(directory, flies_video_path)
    loaded = load_protocol(path)
    subscriber = Subscriber(loaded.protocol.publisher.address)
    subscriber.start()
    subscriber.connected.wait(5)
    daq = make_daq(loaded.protocol.daq)
    daemon = Daemon(loaded, engine=engine, daq=daq, capture_ai=True)
    result = daemon.run()
    time.sleep(0.2)
    subscriber.stop.set()
    subscriber.join(5)
    yield daemon, result, daq, subscriber.messages
    daq.close()


def test_end_of_duration_leaves_every_output_at_zero(ordinary_run):
    daemon, result, daq, _ = ordinary_run
    assert result.stop_reason == "duration" and result.error is None and result.exit_code == 0
    # stopped by its 1.5 s duration; the upper bound only rules out a hang (shutdown on a
    # loaded machine may take a while; how long is a figure for `make demo`, not a test)
    assert 1.45 < result.summary["wall_s"] < 15.0
    assert was_driven(daq, "opto_led") and was_driven(daq, "calibration")  # there was something to zero
    assert_all_outputs_at_zero(daq, since=daemon.t_stop)
    assert result.final_volts == {"opto_led": 0.0, "calibration": 0.0}
    assert result.summary["outputs_final_volts"] == result.final_volts
    # The analog input looped back from the outputs ends at 0 V too.
    trace = result.ai_trace
    assert trace is not None and trace.volts["opto_led_loopback"].max() == pytest.approx(5.0)
    assert trace.volts["opto_led_loopback"][-1] == 0.0 and trace.volts["calibration_loopback"][-1] == 0.0


def test_every_acquired_frame_is_processed_once_or_dropped_with_a_reason(ordinary_run):
    daemon, result, _, _ = ordinary_run
    frames = result.summary["frames"]
    assert frames["acquired"] == frames["processed"] + frames["dropped"]
    assert frames["acquired"] >= 200 and frames["processed"] >= 10
    # a run that dropped frames by replacement says why, in the summary and its JSON
    assert (frames["why_dropped"] is not None) == (frames["dropped_by_reason"]["replaced"] > 0)
    recording = read_recording(result.recording)
    assert len(recording.frame) == frames["processed"]
    assert np.all(np.diff(recording.seq) > 0) and len(set(recording.frame.tolist())) == len(recording.frame)
    dropped_seqs = [seq for d in recording.drops for seq in range(d["seq"], d["seq"] + d["count"])]
    assert sorted(recording.seq.tolist() + dropped_seqs) == list(range(frames["acquired"]))  # each exactly once
    assert recording.end["frames"] == {k: frames[k] for k in ("acquired", "processed", "dropped", "dropped_by_reason")}


def test_timestamps_are_ordered_and_latency_figures_are_reported(ordinary_run):
    _, result, _, _ = ordinary_run
    t = read_recording(result.recording).t
    order = ["exposure", "arrival", "infer_start", "infer_end", "decision", "output"]
    for earlier, later in zip(order, order[1:]):
        assert np.all(t[later] >= t[earlier]), (earlier, later)
    latency = result.summary["latency_ms"]
    for name in ("inference", "overhead"):
        assert latency[name]["p50"] > 0 and latency[name]["p99"] >= latency[name]["p50"]
    # The target is p99 <= 0.5 ms; it is a speed, measured by `make demo` and reported in the
    # README, not asserted here (a test must pass on a loaded or slower CPU).


def test_online_rule_states_agree_with_an_offline_evaluation_of_the_recorded_poses(ordinary_run):
    _, result, _, _ = ordinary_run
    recording = read_recording(result.recording)
    agreement = offline_rule_agreement(recording)
    assert set(agreement) == {"male_approach", "always", "close", "moving"}
    assert all(value >= 0.99 for value in agreement.values()), agreement
    assert recording.rules["always"].all()
    assert result.summary["rule_true_frames"]["always"] == len(recording.frame)


def test_pulse_off_edges_come_on_time_while_the_engine_is_busy(ordinary_run):
    daemon, result, daq, _ = ordinary_run
    t, volts = daq.ao_history("opto_led")
    on = t[1:][(volts[1:] == 5.0) & (volts[:-1] == 0.0)]
    off = t[1:][(volts[1:] == 0.0) & (volts[:-1] == 5.0)]
    widths_ms = 1000 * (off[: len(on)] - on[: len(off)])
    # A pulse still on when the run stops is ended by the shutdown's zeroing, not its timer.
    widths_ms = widths_ms[off[: len(widths_ms)] < daemon.t_stop]
    assert len(widths_ms) >= 5 and result.summary["triggers"] >= len(widths_ms)
    # Inference takes about as long as the pulse, so only the timer thread can end it on time.
    # (On a machine loaded by other work the OS may run the timer thread late now and then:
    # one width in ten may be off, seen up to 52 ms with three test suites beside this one.)
    assert np.median(widths_ms) == pytest.approx(25.0, abs=1.5), widths_ms
    assert np.sum((widths_ms < 15) | (widths_ms > 40)) <= len(widths_ms) // 10, widths_ms
    assert np.all(widths_ms >= 25.0 - 1e-6), widths_ms  # never short: widths count from the on edge's write
    assert np.all(np.diff(on) >= 0.1 - 1e-6)  # the refractory period


def test_published_messages_follow_the_schema(ordinary_run):
    _, result, _, messages = ordinary_run
    recording = read_recording(result.recording)
    # A subscriber misses what was sent before its connection was up, and nothing after that.
    frames = [msgpack.unpackb(payload, raw=False)["frame"] for _, payload in messages]
    assert frames == recording.frame.tolist()[-len(frames):]
    assert recording.t["output"][-len(frames)] - recording.t["output"][0] < 0.5
    by_frame = {int(f): i for i, f in enumerate(recording.frame)}
    classes = set(recording.class_names)
    for topic, payload in messages:
        assert topic == b"poses"
        m = msgpack.unpackb(payload, raw=False)
        assert set(m) == MESSAGE_KEYS and set(m["t"]) == TIME_KEYS
        assert isinstance(m["frame"], int) and all(isinstance(v, float) for v in m["t"].values())
        assert m["t"]["exposure"] <= m["t"]["arrival"] <= m["t"]["infer_start"] <= m["t"]["infer_end"] <= m["t"]["output"]
        n = len(m["identity"])
        assert len(m["points"]) == len(m["point_scores"]) == n
        for instance, scores in zip(m["points"], m["point_scores"]):
            assert len(instance) == len(scores) == len(recording.node_names)
            for point in instance:
                assert point is None or (len(point) == 2 and all(isinstance(c, float) for c in point))
        assert all(name is None or name in classes for name in m["identity"])
        assert all(v is None or isinstance(v, float) for v in m["features"].values())
        assert set(m["features"]) == set(recording.features)
        assert all(isinstance(v, bool) for v in m["rules"].values())
        row = by_frame[m["frame"]]
        assert m["rules"] == {k: bool(v[row]) for k, v in recording.rules.items()}
        assert m["t"]["output"] == recording.t["output"][row]


def test_the_recording_exports_to_slp(ordinary_run, tmp_path):
    from rtpose.data.predictions import read_predictions

    _, result, _, _ = ordinary_run
    recording = read_recording(result.recording)
    predicted = read_predictions(export_slp(recording, tmp_path / "run.slp"))
    assert predicted.node_names == recording.node_names and predicted.class_names == recording.class_names
    assert [f for _, f, _ in predicted.frames] == sorted(recording.frame.tolist())
    first = predicted.frames[0][2]
    np.testing.assert_array_equal(first.points, recording.poses[int(np.argmin(recording.frame))].points)
    # the file says which run, model and graph made it
    import sleap_io as sio

    prov = sio.load_slp(str(tmp_path / "run.slp")).provenance
    assert prov["rtpose.model"] == recording.header["model"]
    assert prov["rtpose.graph"] == recording.header["engine_graph"]
    assert prov["rtpose.recording"] == str(recording.path) and prov["rtpose.engine"] == "ort-cpu"
    assert prov["rtpose.identity_continuity"] is True and "rtpose.model_config_hash" in prov
    assert prov["rtpose.run_ended"] == recording.end["reason"]
    assert prov["rtpose.frames_processed"] == len(recording.frame)
    assert prov["rtpose.frames_dropped"] == recording.dropped


def test_an_existing_recording_is_never_overwritten(ordinary_run, tmp_path, flies_video_path, engine):
    _, first, _, _ = ordinary_run
    before = {f.name: f.read_bytes() for f in first.recording.iterdir()}
    path = write_protocol(tmp_path, flies_video_path, recorder={"path": str(first.recording)})
    daemon, result, daq = run_daemon(path, engine)
    assert result.exit_code == 2 and "already exists" in result.error  # the user's to fix, found before acquiring
    assert result.summary["wall_s"] is None and daemon.t_camera_open is None  # the camera never opened
    assert {f.name: f.read_bytes() for f in first.recording.iterdir()} == before
    daq.close()


def test_rtpose_run_refuses_a_taken_recorder_folder_before_the_banner(ordinary_run, tmp_path, flies_video_path,
                                                                       capsys):
    """A recorder.path without {time} that holds a recording, or that is a file: one line naming
    the protocol and the field, exit 2, before the banner; nothing is touched."""
    _, first, _, _ = ordinary_run
    before = {f.name: f.read_bytes() for f in first.recording.iterdir()}
    path = write_protocol(tmp_path, flies_video_path, recorder={"path": str(first.recording)})
    assert rtpose_cli(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"error: {path}: recorder.path: {first.recording} already holds a recording; "
                                 "choose another folder, or put {time} in recorder.path (a folder per run)\n")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    path = write_protocol(tmp_path, flies_video_path, recorder={"path": str(a_file)})
    assert rtpose_cli(["run", str(path)]) == 2
    assert capsys.readouterr().err == (f"error: {path}: recorder.path: {a_file} is a file; recorder.path names the "
                                       "run's folder (e.g. runs/{name}-{time})\n")
    assert a_file.read_text() == "mine" and {f.name: f.read_bytes() for f in first.recording.iterdir()} == before
    # a folder where no file can be made, with or without {time}: found before the banner too, not when the
    # recorder opens after the model has loaded (a new-user trial)
    for where, why in ((f"{a_file}/rec", f"{a_file} is not a folder"),
                       ("/proc/rec-{time}", "no file can be made in /proc: ")):
        path = write_protocol(tmp_path, flies_video_path, recorder={"path": where})
        assert rtpose_cli(["run", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"error: {path}: recorder.path {where}: cannot write ({why}"), err


# --- a publisher address already in use ---------------------------------------------------


@pytest.fixture
def busy_address():
    """A real ZeroMQ PUB socket holding a port on 127.0.0.1, as another run would."""
    context = zmq.Context()
    holder = context.socket(zmq.PUB)
    holder.setsockopt(zmq.LINGER, 0)
    holder.bind("tcp://127.0.0.1:*")
    try:
        yield holder.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        holder.close(linger=0)
        context.term()


def test_rtpose_run_on_a_port_in_use_is_exit_2_before_the_banner(tmp_path, flies_video_path, busy_address, capsys):
    from rtpose.cli import main as cli_main

    path = write_protocol(tmp_path, flies_video_path, publisher={"address": busy_address})
    assert cli_main(["run", str(path), "--summary", str(tmp_path / "summary.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # no banner: nothing was opened
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err and "publisher.address" in err and busy_address in err and "in use" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "summary.json").exists()


def test_rtpose_run_help_states_the_exit_statuses(capsys):
    from rtpose.cli import main as cli_main
    from rtpose.live.daemon import EXIT_SETUP, EXIT_SIGNALLED

    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{EXIT_SIGNALLED['SIGINT']} Ctrl-C" in text and f"{EXIT_SIGNALLED['SIGTERM']} SIGTERM" in text
    assert f"{EXIT_SETUP} a mistake found before acquisition" in text and "0 ended as asked" in text


def test_a_port_taken_after_the_check_is_still_exit_2_with_zero_volts(tmp_path, flies_video_path, engine,
                                                                     busy_address):
    """The daemon's own bind (a port taken between the check and the run): a setup error, 0 V."""
    path = write_protocol(tmp_path, flies_video_path, publisher={"address": busy_address})
    daemon, result, daq = run_daemon(path, engine)
    assert result.exit_code == 2 and result.setup_error and "cannot bind" in result.error, result.error
    assert daemon.t_camera_open is None and result.summary["wall_s"] is None  # no frame was acquired
    assert all(v == 0.0 for v in daq.ao_values().values())
    daq.close()


# --- the other exit paths ---------------------------------------------------------------


def long_pulse(directory: Path, video: Path, **changes) -> Path:
    """The LED goes on at the first frame and would stay on for 10 s: only the exit path turns it off."""
    outputs = {"opto_led": {"channel": "opto_led",
                            "pulse": {"rule": "always", "volts": 5.0, "duration_ms": 10_000, "refractory_ms": 10_000}},
               "distance_signal": {"channel": "calibration",
                                   "follow": {"feature": "thorax_distance", "from": [0, 20], "to": [1, 5]}}}
    return write_protocol(directory, video, outputs=outputs, **changes)


def when_processed(daemon: Daemon, n: int, action, timeout_s: float = 20.0) -> threading.Thread:
    def wait_then_act():
        deadline = time.monotonic() + timeout_s
        while daemon.processed < n and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_sigint_stops_the_run_with_zero_volts(tmp_path, flies_video_path, engine):
    path = long_pulse(tmp_path, flies_video_path, duration=None)
    loaded = load_protocol(path)
    daq = make_daq(loaded.protocol.daq)
    daemon = Daemon(loaded, engine=engine, daq=daq)
    sent = []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup / `cmd &`
    when_processed(daemon, 3, lambda: (sent.append(clock.now()), os.kill(os.getpid(), signal.SIGINT)))
    result = daemon.run()  # the real handler, installed by run() in this (main) thread
    assert result.stop_reason == "SIGINT" and result.exit_code == 130  # a clean end, but not the one asked for
    assert daq.ao_values()["opto_led"] == 0.0 and was_driven(daq, "opto_led")
    assert_all_outputs_at_zero(daq, since=sent[0])
    assert daemon.t_zeroed - sent[0] < 0.5
    assert read_recording(result.recording).end["reason"] == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    daq.close()


class EngineFailingAfter(Engine):
    """The real model whose runtime fails on a later frame (an ONNX Runtime error, a GPU gone): the Engine seam."""

    name = "failing"

    def __init__(self, inner: Engine, frames_before_failure: int):
        super().__init__(inner.export_dir)
        self.inner, self.remaining = inner, frames_before_failure
        self.failed_at: float | None = None

    @property
    def device(self) -> str:
        return self.inner.device

    def run_raw(self, batch):
        if self.remaining == 0:
            self.failed_at = clock.now()
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.remaining -= 1
        return self.inner.run_raw(batch)


def test_an_exception_in_the_inference_thread_stops_the_run_with_zero_volts(tmp_path, flies_video_path, engine):
    failing = EngineFailingAfter(engine, frames_before_failure=4)
    daemon, result, daq = run_daemon(long_pulse(tmp_path, flies_video_path, duration=10), failing)
    assert result.stop_reason == "error" and result.exit_code == 1
    assert "inference thread: RuntimeError: CUDA error" in result.error
    assert was_driven(daq, "opto_led")
    assert_all_outputs_at_zero(daq, since=failing.failed_at)
    assert daemon.t_zeroed - failing.failed_at < 0.2
    frames = result.summary["frames"]
    assert frames["processed"] == 4 and frames["dropped_by_reason"]["error"] == 1
    assert frames["acquired"] == frames["processed"] + frames["dropped"]
    recording = read_recording(result.recording)
    assert recording.end["reason"] == "error" and len(recording.frame) == 4
    daq.close()


def test_a_camera_whose_frames_do_not_fit_the_model_is_refused_with_zero_volts(tmp_path, mice_path, engine):
    """The 768x1024 mouse video on the replay camera with the 1024x1024 fly model: no frame
    is run padded into the wrong model; the run stops with one line naming both sizes."""
    mice_video = mice_path.parent / "video.mp4"
    assert mice_video.exists(), mice_video
    with VideoReader(mice_video) as reader:
        h, w = reader.shape
    path = write_protocol(tmp_path, mice_video, camera__frames=f"0-{len(reader) - 1}", duration=2)
    daemon, result, daq = run_daemon(path, engine)
    # found while opening the camera: a setup error (rtpose run checks a replay source before its banner)
    assert result.stop_reason == "error" and result.exit_code == 2
    assert f"camera replay: frames are {h}x{w} but the model takes 1024x1024" in result.error
    assert "trained on frames of another shape" in result.error and "--frame-size" not in result.error
    assert result.summary["frames"]["processed"] == 0 and not was_driven(daq, "opto_led")
    assert set(daq.ao_values().values()) == {0.0}
    daq.close()


class EngineHangingAfter(EngineFailingAfter):
    """The real model whose runtime hangs on a later frame (a GPU that stops answering)."""

    def run_raw(self, batch):
        if self.remaining == 0 and self.failed_at is None:
            self.failed_at = clock.now()
            time.sleep(1.5)
        self.remaining -= 1
        return self.inner.run_raw(batch)


def test_an_engine_that_hangs_stops_the_run_with_zero_volts(tmp_path, flies_video_path, engine):
    hanging = EngineHangingAfter(engine, frames_before_failure=4)
    path = long_pulse(tmp_path, flies_video_path, duration=10, safety={"inference_stall_s": 0.5})
    daemon, result, daq = run_daemon(path, hanging)
    assert result.stop_reason == "inference stalled" and result.exit_code == 1
    assert "safety.inference_stall_s" in result.error
    assert 0.45 <= daemon.t_zeroed - hanging.failed_at < 1.0
    assert was_driven(daq, "opto_led")
    assert_all_outputs_at_zero(daq, since=hanging.failed_at)
    frames = result.summary["frames"]
    assert frames["acquired"] == frames["processed"] + frames["dropped"] and frames["processed"] == 4
    daq.close()


class StallingReplay(ReplayCamera):
    """The fly clip, but the camera goes silent after some frames (a cable pulled, a trigger lost).

    ``hang=True``: ``read`` blocks until closed, ignoring its timeout (a driver that stops
    calling back), so only the daemon's watchdog can notice. ``hang=False``: ``read``
    raises ``CameraTimeout`` after its timeout, as a well-behaved backend does.
    """

    def __init__(self, path, frames_before_stall: int, hang: bool):
        # A buffer deep enough that no exposure is lost to thread scheduling on a loaded machine, so that
        # the frames acquired before the stall are exactly frames_before_stall.
        super().__init__(path, fps=150, frames="0-599", buffer_frames=64)
        self.remaining, self.hang = frames_before_stall, hang
        self.closed = threading.Event()
        self.stalled_at: float | None = None

    def read(self, timeout_s: float = 1.0):
        if self.remaining > 0:
            self.remaining -= 1
            return super().read(timeout_s)
        if self.stalled_at is None:
            self.stalled_at = clock.now()
        if self.hang:
            self.closed.wait()
            return None
        if self.closed.wait(timeout_s):
            return None
        raise CameraTimeout(f"{self.name}: no frame within {timeout_s:g} s")

    def close(self) -> None:
        self.closed.set()
        super().close()


@pytest.mark.parametrize("hang", [True, False], ids=["read-hangs", "read-times-out"])
def test_a_camera_that_stops_delivering_stops_the_run_with_zero_volts(tmp_path, flies_video_path, engine, hang):
    camera = StallingReplay(flies_video_path, frames_before_stall=60, hang=hang)
    path = long_pulse(tmp_path, flies_video_path, duration=10, safety={"camera_stall_s": 0.5})
    daemon, result, daq = run_daemon(path, engine, camera=camera)
    assert result.stop_reason == "camera stalled" and result.exit_code == 1
    assert "camera stopped delivering" in result.error
    assert 0.5 <= daemon.t_zeroed - camera.stalled_at < 1.5
    assert was_driven(daq, "opto_led")
    assert_all_outputs_at_zero(daq, since=camera.stalled_at)
    frames = result.summary["frames"]
    assert frames["acquired"] == 60 == frames["processed"] + frames["dropped"]
    assert read_recording(result.recording).end["reason"] == "camera stalled"
    daq.close()


class BrokenReplay(ReplayCamera):
    """The fly clip, but the driver warns once and then raises in the camera thread (a USB link lost)."""

    def __init__(self, path, frames_before_failure: int):
        super().__init__(path, fps=150, frames="0-599")
        self.remaining = frames_before_failure

    def read(self, timeout_s: float = 1.0):
        if self.remaining == 0:
            return self._lose_the_link()
        self.remaining -= 1
        if self.remaining == 1:
            warnings.warn("camera: frame rate below the requested 150 FPS", RuntimeWarning, stacklevel=1)
        return super().read(timeout_s)

    def _lose_the_link(self):
        raise OSError("USB3 link lost (libusb error -4)")


def test_a_camera_thread_that_raises_leaves_its_traceback_in_run_log(tmp_path, flies_video_path, engine, capfd):
    camera = BrokenReplay(flies_video_path, frames_before_failure=10)
    path = long_pulse(tmp_path, flies_video_path, duration=10)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        daemon, result, daq = run_daemon(path, engine, camera=camera)
    assert result.exit_code == 1 and result.error == "camera thread: OSError: USB3 link lost (libusb error -4)"
    assert_all_outputs_at_zero(daq, since=0.0)
    log = (result.recording / "run.log").read_text()
    traceback = log[log.index("[rtpose-camera] rtpose.live.daemon: camera failed"):]
    assert "Traceback (most recent call last):" in traceback
    assert 'in _lose_the_link\n    raise OSError("USB3 link lost' in traceback
    assert "OSError: USB3 link lost (libusb error -4)" in traceback
    assert "WARNING [rtpose-camera] rtpose.warnings:" in log and "frame rate below the requested 150 FPS" in log
    assert "rtpose.live.daemon: stopped: error" in log  # the log runs to the end of the run
    # the terminal stays as quiet as before: no log line, no traceback
    out, err = capfd.readouterr()
    assert "camera failed" not in out + err and "Traceback" not in out + err
    daq.close()


class ClosedBeforeDecode(ReplayCamera):
    """The fly clip, where the first frame the loop uses from exposure ``seq`` on is decoded only after
    the run has been stopped and the camera closed: the window between the inference thread's take
    and its decode, held open."""

    def __init__(self, path, seq: int):
        super().__init__(path, fps=150, frames="0-599")
        self.seq, self.daemon, self.closed, self.held = seq, None, threading.Event(), None

    def _pixels(self, seq, index, prefetch=False):
        if seq >= self.seq and not prefetch and self.held is None:
            self.held = seq
            self.daemon.request_stop()
            assert self.closed.wait(10), "the shutdown did not close the camera"
        return super()._pixels(seq, index, prefetch)

    def close(self):
        super().close()
        self.closed.set()


def test_a_frame_decoded_after_the_shutdown_closed_the_camera_is_a_shutdown_drop(tmp_path, flies_video_path,
                                                                                  engine):
    camera = ClosedBeforeDecode(flies_video_path, seq=20)
    loaded = load_protocol(long_pulse(tmp_path, flies_video_path, duration=10))
    daq = make_daq(loaded.protocol.daq)
    daemon = camera.daemon = Daemon(loaded, engine=engine, daq=daq, camera=camera)
    result = daemon.run()
    assert result.error is None and result.exit_code == 0, result.error
    assert result.stop_reason == "requested" and camera.held is not None
    frames = result.summary["frames"]
    assert frames["dropped_by_reason"]["shutdown"] >= 1 and frames["dropped_by_reason"]["error"] == 0
    assert frames["acquired"] == frames["processed"] + frames["dropped"]
    assert_all_outputs_at_zero(daq, since=0.0)
    daq.close()


class FlakySimDaq(SimDaq):
    """The sim DAQ whose driver starts failing writes mid-run (the backend hook NI-DAQmx would fail in)."""

    writes_before_failure = 6

    def _write_hardware(self, channel: str, volts: float) -> float:
        if volts != 0.0:
            if self.writes_before_failure == 0:
                raise OSError("DAQmx Error -200279: the application is not able to keep up with the hardware")
            self.writes_before_failure -= 1
        return super()._write_hardware(channel, volts)


def test_a_daq_write_that_fails_mid_run_stops_the_run_with_zero_volts(tmp_path, flies_video_path, engine):
    loaded = load_protocol(write_protocol(tmp_path, flies_video_path, duration=10))
    daq = FlakySimDaq.from_config(loaded.protocol.daq)
    result = Daemon(loaded, engine=engine, daq=daq).run()
    assert result.stop_reason == "error" and "DAQmx Error -200279" in result.error
    assert was_driven(daq, "opto_led")
    assert all(v == 0.0 for v in daq.ao_values().values())
    daq.close()


# --- the command line, in a subprocess ----------------------------------------------------


def start_cli(path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rtpose", "run", str(path), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_recorded_frames(run_dir: Path, n: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        record = run_dir / "record.msgpack"
        if record.exists() and sum(1 for r in iter_records(record) if r.get("type") == "frame") >= n:
            return
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"no {n} frames recorded within {timeout_s} s")


def test_sigterm_to_rtpose_run_stops_with_zero_volts_and_a_summary(tmp_path, flies_video_path):
    path = long_pulse(tmp_path, flies_video_path, duration=None)
    process = start_cli(path, "--summary", str(tmp_path / "summary.json"))
    wait_for_recorded_frames(tmp_path / "run", 3, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 143, output  # 128 + SIGTERM: scripts can tell it from a run that ended as asked
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop"]["reason"] == "SIGTERM"
    assert summary["outputs_final_volts"] == {"opto_led": 0.0, "calibration": 0.0}
    assert summary["frames"]["acquired"] == summary["frames"]["processed"] + summary["frames"]["dropped"]
    recording = read_recording(tmp_path / "run")
    assert recording.end["reason"] == "SIGTERM" and recording.end["final_volts"] == summary["outputs_final_volts"]
    assert recording.volts["opto_led"][0] == 5.0  # the LED was on when the signal came
    assert "SIGTERM" in output and "opto_led 0 V" in output


def test_a_killed_run_leaves_a_readable_recording(tmp_path, flies_video_path, capsys):
    path = write_protocol(tmp_path, flies_video_path, duration=None, publisher={"enabled": False},
                          recorder={"path": str(tmp_path / "run"), "fsync_s": 0.2})
    process = start_cli(path)
    wait_for_recorded_frames(tmp_path / "run", 5, process)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.wait(10)
    recording = read_recording(tmp_path / "run")
    assert recording.end is None and len(recording.frame) >= 5
    assert recording.complete_bytes <= (tmp_path / "run" / "record.msgpack").stat().st_size
    assert all(p.points.shape[1:] == (len(recording.node_names), 2) for p in recording.poses)
    assert np.all(np.diff(recording.seq) > 0)
    assert all(v >= 0.99 for v in offline_rule_agreement(recording).values())
    # its poses as .slp (rtpose recording -o), which says the run was killed
    import sleap_io as sio

    out = tmp_path / "killed.slp"
    assert rtpose_cli(["recording", str(tmp_path / "run"), "-o", str(out)]) == 0
    prov = sio.load_slp(str(out)).provenance
    assert prov["rtpose.run_ended"].startswith("no end record: the run was killed")
    assert prov["rtpose.frames_processed"] == len(recording.frame)
    # a second export to the same file is refused in one line, the file kept; --overwrite replaces it
    before = out.read_bytes()
    assert rtpose_cli(["recording", str(tmp_path / "run"), "-o", str(out)]) == 2
    assert f"{out} already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert rtpose_cli(["recording", str(tmp_path / "run"), "-o", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert rtpose_cli(["recording", str(tmp_path / "run"), "-o", str(tmp_path), "--overwrite"]) == 2  # a folder
    assert capsys.readouterr() == ("", f"error: {tmp_path}: is a folder; predictions must be written to a .slp "
                                       "file\n")  # said before the summary


def test_the_live_path_does_not_import_torch():
    code = "import rtpose.live.daemon, rtpose.live.command, rtpose.live.listen"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "torch" not in result.stderr.lower()


def test_rtpose_run_refuses_an_existing_summary_before_the_run_unless_overwrite(tmp_path, flies_video_path, capsys):
    """`run --summary` on an existing file: one line naming it, --summary and --overwrite, exit 2,
    before the banner (nothing opened, no recording), the file untouched; --overwrite replaces it."""
    from rtpose.cli import main as cli_main

    path = write_protocol(tmp_path, flies_video_path, duration=0.5)
    summary = tmp_path / "summary.json"
    summary.write_bytes(b"an earlier run's summary")
    assert cli_main(["run", str(path), "--summary", str(summary)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {summary} already exists: give another --summary, or --overwrite to replace it\n"
    assert captured.out == "" and not (tmp_path / "run").exists()
    assert summary.read_bytes() == b"an earlier run's summary"
    assert cli_main(["run", str(path), "--summary", str(summary), "--overwrite"]) == 0
    assert json.loads(summary.read_text())["frames"]["processed"] > 0


# --- the terminal's status line ------------------------------------------------------------


def test_on_status_gets_the_status_map_twice_a_second_and_a_failing_one_does_not_stop_the_run(tmp_path,
                                                                                                flies_video_path,
                                                                                                engine):
    """The supervising thread hands ``on_status`` the ``status`` map while running
    (what ``rtpose run`` draws in the terminal); one that raises is dropped after its
    first call and the run ends as asked, at 0 V."""
    from rtpose.live.terminal import status_text

    got = []
    path = write_protocol(tmp_path / "a", flies_video_path, duration=2.0)
    daemon, result, daq = run_daemon(path, engine, on_status=got.append)
    daq.close()
    assert result.stop_reason == "duration" and len(got) >= 3, len(got)
    elapsed = [m["elapsed_s"] for m in got]
    assert elapsed == sorted(elapsed) and 0.0 <= elapsed[0] < 0.5 and 1.0 < elapsed[-1] <= 2.0, elapsed
    processed = [m["frames"]["processed"] for m in got]
    assert processed == sorted(processed) and processed[-1] > 0
    assert all(m["running"] and m["duration_s"] == 2.0 for m in got)
    line = status_text(got[-1], rate_per_s=100.0)
    assert line.startswith(f"running {elapsed[-1]:.1f} / 2 s | {processed[-1]} processed (100/s), "), line
    assert "triggers opto_led " in line and "inference p50 " in line and "exposure -> output p99 " in line

    calls = []

    def broken(message):
        calls.append(message)
        raise RuntimeError("a display that fails")

    path = write_protocol(tmp_path / "b", flies_video_path, duration=1.5)
    started = clock.now()
    daemon, result, daq = run_daemon(path, engine, on_status=broken)
    assert result.stop_reason == "duration" and result.error is None and len(calls) == 1
    assert_all_outputs_at_zero(daq, started)
    daq.close()
    assert "on_status failed" in (tmp_path / "b" / "run" / "run.log").read_text()


def test_rtpose_run_draws_its_status_line_on_a_terminal_and_not_in_a_log(tmp_path, flies_video_path):
    """On a terminal (a pseudo-terminal here) the line is redrawn while the run goes on and
    the summary follows it; off a terminal (a pipe) the output has no such line."""
    import pty

    path = write_protocol(tmp_path, flies_video_path, duration=2.0, recorder={"enabled": False},
                          publisher={"enabled": False})
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "rtpose", "run", str(path)], cwd=REPO, stdout=secondary,
                               stderr=secondary, env={**os.environ, "COLUMNS": "200"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert process.wait(60) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "running 1." in shown and " processed (" in shown and " | triggers opto_led" in shown, shown[:2000]
    assert shown.index(" | triggers opto_led") < shown.index("rtpose run: ")  # the line, then the summary

    piped = subprocess.run([sys.executable, "-m", "rtpose", "run", str(path)], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert piped.returncode == 0 and "rtpose run: " in piped.stdout
    assert " | triggers" not in piped.stdout + piped.stderr and "running 1." not in piped.stdout + piped.stderr
