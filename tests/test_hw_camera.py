"""Cameras: replay of the real fly clip (pacing, ranges, loop, end, slow readers), the OpenCV
backend on the same file, and the Spinnaker backend's settings and timestamps without a camera."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

from rtpose import clock
from rtpose.data.video import VideoReader
from rtpose.errors import RtposeError
from rtpose.hw import CameraTimeout, DriverMissing, open_camera, parse_camera_config
from rtpose.hw.clock_fit import DeviceClock
from rtpose.hw.errors import CameraError
from rtpose.hw.firmware import SpinnakerDevice, TimestampSettings
from rtpose.hw.opencv_camera import OpenCvCamera
from rtpose.hw.replay import ReplayCamera
from rtpose.hw.spinnaker import camera_settings, exposure_start


def read_all(camera, limit: int = 10_000) -> list:
    frames = []
    while len(frames) < limit and (frame := camera.read(timeout_s=2.0)) is not None:
        frames.append(frame)
    return frames


# -- replay -------------------------------------------------------------------------------


def test_replay_paces_frames_at_the_requested_rate(flies_video_path):
    with open_camera({"backend": "replay", "path": str(flies_video_path), "fps": 150, "frames": "0-74"}) as camera:
        assert camera.frame_rate == 150 and camera.frame_shape == (1024, 1024)
        frames = read_all(camera)
        assert camera.read() is None  # the source has ended, and stays ended
        assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (1024, 1024)
    assert [f.index for f in frames] == list(range(75))
    assert [f.seq for f in frames] == list(range(75))
    t_exposure = np.array([f.t_exposure for f in frames])
    np.testing.assert_allclose(np.diff(t_exposure), 1 / 150, atol=1e-9)
    assert t_exposure[0] == pytest.approx(camera.t0, abs=1e-9)
    late_ms = 1000 * (np.array([f.t_arrival for f in frames]) - t_exposure)
    assert late_ms.min() >= 0  # never handed over before its exposure time
    assert np.median(late_ms) < 2.0 and np.percentile(late_ms, 90) < 6.0, late_ms
    assert camera.dropped == 0
    with pytest.raises(CameraError, match="after close"):  # pixels are decoded on first use, while open
        frames[1].image


def test_replay_frame_range_plays_those_frames_of_the_video(flies_video_path):
    with VideoReader(flies_video_path) as reader, ReplayCamera(flies_video_path, fps=500, frames="1200-1219") as camera:
        frames = read_all(camera)
        assert [f.index for f in frames] == list(range(1200, 1220))
        for frame, (index, image) in zip(frames, reader.frames(range(1200, 1220))):
            np.testing.assert_array_equal(frame.image, image, err_msg=f"frame {index}")



def test_replay_loop_repeats_the_range_with_identical_images(flies_video_path):
    with ReplayCamera(flies_video_path, fps=150, frames="0-11", loop=True) as camera:
        frames = [camera.read() for _ in range(30)]
        assert camera.dropped == 0
        for first, again in zip(frames[:12], frames[12:24]):
            np.testing.assert_array_equal(first.image, again.image)
    assert [f.index for f in frames] == [*range(12), *range(12), *range(6)]
    np.testing.assert_allclose(np.diff([f.t_exposure for f in frames]), 1 / 150, atol=1e-9)


def test_replay_loop_of_a_range_inside_the_video(flies_video_path):
    with ReplayCamera(flies_video_path, fps=40, frames="700-707", loop=True) as camera:
        frames = [camera.read() for _ in range(12)]
        with VideoReader(flies_video_path) as reader:
            np.testing.assert_array_equal(frames[8].image, reader.read(700))
    assert [f.index for f in frames] == [*range(700, 708), *range(700, 704)]


def test_replay_keeps_its_schedule_and_drops_for_a_slow_reader(flies_video_path):
    fps = 200.0
    with ReplayCamera(flies_video_path, fps=fps, frames="0-299", buffer_frames=2) as camera:
        frames = []
        for _ in range(8):
            frames.append(camera.read())
            time.sleep(0.025)  # five frame periods: a reader far slower than the camera
        elapsed = clock.now() - camera.t0
        dropped = camera.dropped
    seqs = [f.seq for f in frames]
    assert dropped > 0 and max(np.diff(seqs)) > 1
    assert dropped == seqs[-1] + 1 - len(frames)
    for frame in frames:
        assert frame.index == frame.seq  # the range starts at 0 and does not loop
        assert frame.t_exposure == pytest.approx(camera.t0 + frame.seq / fps, abs=1e-9)
        # it waited at most the camera's two-frame buffer
        assert frame.t_arrival - frame.t_exposure < 2 / fps + 0.010
    # the camera did not slow down: the last frame is about as new as the time that passed
    assert seqs[-1] >= (elapsed - 0.030) * fps - 3


def test_replay_decodes_ahead_in_order_so_a_reader_using_every_frame_never_seeks_back(flies_video_path,
                                                                                       monkeypatch):
    """The daemon's shape: one thread reads the camera into a queue, another uses each
    frame's pixels. Once the camera decodes ahead (after a window of used frames), the
    decoder must not pass a handed-over frame the user has yet to use: that cost a seek
    back of ~125 ms and dropped a third of the frames at 60 FPS."""
    requested: list[int] = []
    real_read = VideoReader.read

    def read(self, index):
        requested.append(index)
        return real_read(self, index)

    monkeypatch.setattr(VideoReader, "read", read)
    handed = []
    with ReplayCamera(flies_video_path, fps=60.0, frames="100-199") as camera:
        def acquire():
            while (frame := camera.read()) is not None:
                handed.append(frame)
        thread = threading.Thread(target=acquire)
        thread.start()
        used = 0
        while thread.is_alive() or used < len(handed):
            if used < len(handed):
                assert handed[used].image.shape == (1024, 1024)
                used += 1
                time.sleep(0.004)  # the inference
            else:
                time.sleep(0.001)
        thread.join()
        decoded = camera.decoded
    assert used == 100
    assert decoded >= 100
    decoded_order = requested[requested.index(100):]  # before it: open()'s check of the range's end
    assert decoded_order == sorted(decoded_order), "the decoder went back for a frame"


def test_replay_uses_the_files_rate_when_none_is_given(flies_video_path):
    with ReplayCamera(flies_video_path, frames="0-1") as camera:
        assert camera.frame_rate == pytest.approx(25.0)
        first, second = camera.read(), camera.read()
    assert second.t_exposure - first.t_exposure == pytest.approx(0.04, abs=1e-9)


def test_replay_times_out_when_no_frame_is_due(flies_video_path):
    with ReplayCamera(flies_video_path, fps=0.5, frames="0-5") as camera:
        assert camera.read(timeout_s=1.0).index == 0
        start = clock.now()
        with pytest.raises(CameraTimeout, match="no frame within"):
            camera.read(timeout_s=0.1)
        assert clock.now() - start == pytest.approx(0.1, abs=0.05)


def test_replay_close_from_another_thread_ends_a_blocked_read(flies_video_path):
    camera = ReplayCamera(flies_video_path, fps=1.0, frames="0-5")
    camera.open()
    camera.read()
    threading.Timer(0.05, camera.close).start()
    start = clock.now()
    assert camera.read(timeout_s=5.0) is None
    assert clock.now() - start < 0.5


def test_replay_config_is_checked_before_opening(flies_video_path, monkeypatch):
    monkeypatch.setenv("RTPOSE_DATA", str(flies_video_path.parent.parent))
    config = parse_camera_config({"backend": "replay", "path": "${RTPOSE_DATA}/flies13/clip.mp4", "fps": 150})
    assert config.path == str(flies_video_path)
    cases = {
        "camera.fps: Input should be greater than 0": {"fps": 0},
        "camera.path: /nowhere/clip.mp4: no such video file": {"path": "/nowhere/clip.mp4"},
        "camera.frames: Value error, frame range": {"frames": "ten-twenty"},
        "camera.speed: unknown key": {"speed": 2},
        "environment variable RTPOSE_NOT_SET_ANYWHERE": {"path": "$RTPOSE_NOT_SET_ANYWHERE/clip.mp4"},
    }
    for expected, change in cases.items():
        data = {"backend": "replay", "path": str(flies_video_path), **change}
        with pytest.raises(RtposeError) as error:
            parse_camera_config(data)
        assert expected.replace("Value error, ", "") in str(error.value)
        assert "\n" not in str(error.value)
    with pytest.raises(RtposeError, match="camera.backend: unknown backend 'webcam'"):
        parse_camera_config({"backend": "webcam"})
    with pytest.raises(RtposeError, match="outside clip.mp4: valid frames are 0-1499"):
        open_camera({"backend": "replay", "path": str(flies_video_path), "frames": "1490-1600"})


# -- opencv -------------------------------------------------------------------------------


def test_opencv_reads_a_video_path_in_order_without_dropping(flies_video_path):
    camera = OpenCvCamera(str(flies_video_path), buffer_frames=3, exposure_lead_ms=7.0)
    with camera:
        frames = [camera.read() for _ in range(6)]
        assert camera.frame_shape == (1024, 1024) and camera.frame_rate == pytest.approx(25.0)
    assert camera.read() is None  # closed
    assert [f.index for f in frames] == list(range(6)) and camera.dropped == 0
    for frame in frames:
        assert frame.t_arrival - frame.t_exposure == pytest.approx(0.007)
    with VideoReader(flies_video_path) as reader:
        np.testing.assert_array_equal(frames[5].image, reader.read(5))


def test_opencv_refuses_a_size_the_source_does_not_give(flies_video_path):
    with pytest.raises(CameraError, match="asked for 640x480, the device gives 1024x1024"):
        OpenCvCamera(str(flies_video_path), width=640, height=480).open()


def test_opencv_missing_device_is_a_clear_error():
    with pytest.raises(CameraError, match="opencv:57: could not open"):
        open_camera({"backend": "opencv", "device": 57})
    with pytest.raises(RtposeError, match="camera.device: Value error, device index must be >= 0|device index must be >= 0"):
        parse_camera_config({"backend": "opencv", "device": -1})


# -- spinnaker (no camera, no SDK here) ------------------------------------------------------


def test_spinnaker_without_pyspin_says_what_to_install():
    if importlib.util.find_spec("PySpin") is not None:
        pytest.skip("PySpin is installed on this machine")
    with pytest.raises(DriverMissing) as error:
        open_camera({"backend": "spinnaker"})
    message = str(error.value)
    assert "'PySpin'" in message and "Spinnaker SDK" in message and "unrelated" in message
    assert "\n" not in message


def _blackfly(**changes) -> SpinnakerDevice:
    device = parse_camera_config({"backend": "spinnaker"}).device
    return SpinnakerDevice.model_validate({**device.model_dump(), **changes})


def _position(settings, node, value=None) -> int:
    return next(i for i, s in enumerate(settings) if s.node == node and (value is None or s.value == value))


def test_spinnaker_free_run_settings_from_the_blackfly_file():
    settings = camera_settings(_blackfly())
    by_node = {s.node: s.value for s in settings}  # the last write of each node wins
    assert by_node["PixelFormat"] == "Mono8"
    assert (by_node["Width"], by_node["Height"], by_node["OffsetX"], by_node["OffsetY"]) == (1024, 1024, 128, 0)
    assert by_node["ExposureTime"] == 2000.0 and by_node["ExposureAuto"] == "Off"
    assert by_node["AcquisitionFrameRateEnable"] is True and by_node["AcquisitionFrameRate"] == 150.0
    assert by_node["TriggerMode"] == "Off" and "TriggerSource" not in by_node
    assert by_node["ChunkSelector"] == "Timestamp" and by_node["ChunkEnable"] is True
    stream = {s.node: s.value for s in settings if s.nodemap == "stream"}
    assert stream == {"StreamBufferHandlingMode": "NewestOnly", "StreamBufferCountMode": "Manual", "StreamBufferCountManual": 3}
    # offsets go to 0 before the size grows; exposure before the rate it limits
    assert _position(settings, "OffsetX", 0) < _position(settings, "Width") < _position(settings, "OffsetX", 128)
    assert _position(settings, "ExposureTime") < _position(settings, "AcquisitionFrameRate")


def test_spinnaker_hardware_trigger_settings():
    trigger = {"mode": "hardware", "source": "Line3", "activation": "falling_edge", "overlap": "off"}
    settings = camera_settings(_blackfly(trigger=trigger))
    by_node = {s.node: s.value for s in settings}
    assert by_node["AcquisitionFrameRateEnable"] is False and "AcquisitionFrameRate" not in by_node
    assert (by_node["TriggerSource"], by_node["TriggerActivation"], by_node["TriggerOverlap"]) == ("Line3", "FallingEdge", "Off")
    assert _position(settings, "TriggerMode", "Off") < _position(settings, "TriggerSource") < _position(settings, "TriggerMode", "On")


def test_spinnaker_file_and_overrides_are_validated():
    with pytest.raises(RtposeError, match="exposure_us 8000 does not fit in the frame period of 6667 us at 150 FPS"):
        parse_camera_config({"backend": "spinnaker", "exposure_us": 8000})
    assert parse_camera_config({"backend": "spinnaker", "exposure_us": 8000, "fps": 100}).device.exposure_us == 8000
    assert parse_camera_config({"backend": "spinnaker", "serial": 20123456}).device.serial == "20123456"
    with pytest.raises(ValueError, match="does not fit the 1280x1024 sensor"):
        _blackfly(roi={"width": 1024, "height": 1024, "offset_x": 512, "offset_y": 0})
    with pytest.raises(RtposeError, match="camera.device_file: .*kind is 'daq', but a camera device file is needed"):
        parse_camera_config({"backend": "spinnaker", "device_file": "firmware_configs/sim_daq.yaml"})


def test_spinnaker_exposure_time_from_chunk_and_from_arrival():
    # A camera clock 3 s behind ours and 30 ppm fast, latched through brackets of 0.1-0.4 ms.
    rng = np.random.default_rng(1)
    camera_clock = DeviceClock(1e9, bin_s=10.0)

    def camera_ns(host: float) -> int:
        return int(round((host - 3.0) * (1 + 30e-6) * 1e9))

    for sync in range(12):
        host = 100.0 + 10.0 * sync
        for _ in range(5):
            width = rng.uniform(1e-4, 4e-4)
            latched = host + rng.uniform(0, width)
            camera_clock.observe_bracket(camera_ns(latched), host, host + width)
            host += 0.001
    exposed_at = 215.0
    settings = TimestampSettings(source="chunk", chunk_marks="exposure_start")
    t = exposure_start(settings, 2000.0, exposed_at + 0.009, camera_ns(exposed_at), camera_clock)
    assert t == pytest.approx(exposed_at, abs=1e-4)
    ended = TimestampSettings(source="chunk", chunk_marks="exposure_end")
    t = exposure_start(ended, 2000.0, exposed_at + 0.009, camera_ns(exposed_at + 0.002), camera_clock)
    assert t == pytest.approx(exposed_at, abs=1e-4)
    arrival = TimestampSettings(source="arrival", readout_ms=4.0)
    assert exposure_start(arrival, 2000.0, 10.0, None, None) == pytest.approx(10.0 - 0.004 - 0.002)
    with pytest.raises(CameraError, match="without a Timestamp chunk"):
        exposure_start(settings, 2000.0, 10.0, None, camera_clock)
