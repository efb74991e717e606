"""The view's subscriber (real ZeroMQ sockets on 127.0.0.1) and the preview encoder (real clip frames)."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from rtpose.data.video import VideoReader
from rtpose.errors import RtposeError
from rtpose.live.preview import PreviewEncoder, encode_preview
from rtpose.live.protocol import load_protocol
from rtpose.live.publisher import frame_message
from rtpose.live import probe
from rtpose.view.stream import StreamWatcher

from test_view import DEMO, free_port, wait_for


def status(run: str, running: bool, processed: int) -> dict:
    return {"run": run, "running": running, "stop_reason": None if running else "duration", "error": None,
            "t": 1.0, "protocol": {"name": "p"}, "frames": {"acquired": processed, "processed": processed,
                                                             "dropped": 0, "dropped_by_reason": {}},
            "skeleton": {"nodes": ["a"], "edges": [], "classes": ["x"], "identities": ["x"]},
            "rules": {"r": "1 < 2"}, "outputs": {}, "triggers": {}}


def poses(frame: int, rule: bool, volts: float = 0.0) -> dict:
    t = 10.0 + frame / 150
    return {"frame": frame, "t": {"exposure": t, "arrival": t, "infer_start": t, "infer_end": t + 0.004,
                                  "output": t + 0.005},
            "points": [[[1.0, 2.0]]], "point_scores": [[0.9]], "identity": ["x"], "features": {},
            "rules": {"r": rule}, "volts": {"led": volts}}


class Pub:
    def __init__(self, address: str | None = None):
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(self.address)

    def send(self, topic: str, message) -> None:
        self.socket.send(frame_message(topic.encode(), msgpack.packb(message, use_bin_type=True)))

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


def keep_sending(pub: Pub, topic: str, make, until) -> None:
    """Send until ``until()`` holds (a SUB misses what was sent before it joined)."""
    i = 0
    deadline = time.monotonic() + 20
    while not until() and time.monotonic() < deadline:
        pub.send(topic, make(i))
        i += 1
        time.sleep(0.01)


def watch(pub: Pub) -> tuple[StreamWatcher, list[tuple[str, str]]]:
    """A started watcher of ``pub`` (stale after 0.5 s) and the (state, line) changes it announces."""
    lines: list[tuple[str, str]] = []
    watcher = StreamWatcher(pub.address, stale_s=0.5, on_change=lambda state, line: lines.append((state, line)))
    watcher.start()
    return watcher, lines


def test_the_watcher_tells_live_stale_gone_and_a_new_run_apart():
    pub = Pub()
    watcher, lines = watch(pub)
    try:
        keep_sending(pub, "status", lambda i: status("run A", True, 5), lambda: watcher.status is not None)
        frame = iter(range(10_000))
        keep_sending(pub, "poses", lambda i: poses(next(frame), rule=(i // 3) % 2 == 0, volts=5.0 * (i % 2)),
                     lambda: watcher.received >= 12)
        assert watcher.headline()[0] == "live"
        data, _ = watcher.snapshot()
        assert data["rule_changes"]["r"] >= 2 and data["events"] and data["samples"]
        assert sum(data["histograms"]["inference"]) == watcher.received
        # Inference took 4 ms (t.infer_end - t.infer_start): the bin [low * ratio**k, low * ratio**(k+1)) holding 4.
        h = data["histograms"]
        k = int(np.argmax(h["inference"]))
        assert h["low_ms"] * h["ratio"] ** k <= 4.0 < h["low_ms"] * h["ratio"] ** (k + 1)
        # Silence while connected: stale.
        wait_for(lambda: watcher.headline()[0] == "stale", 10, "stale")
        assert "no message for" in watcher.headline()[1]
        # The publisher goes away without a last status: gone (not merely stale).
        pub.close()
        wait_for(lambda: watcher.headline()[0] == "gone", 10, "gone")
        # A new daemon on the same address: a new run, figures start over.
        pub = Pub(watcher.address)
        keep_sending(pub, "status", lambda i: status("run B", True, 1), lambda: watcher.run == "run B")
        assert watcher.received == 0 and watcher.rule_changes == {}
        keep_sending(pub, "status", lambda i: status("run B", False, 1), lambda: watcher.headline()[0] == "stopped")
        assert "the daemon stopped (duration)" in watcher.headline()[1]
    finally:
        watcher.close()
        pub.close()
    states = [state for state, _ in lines]
    assert "live" in states and "gone" in states and states[-1] == "stopped"


def test_a_new_run_after_the_daemon_went_away_is_not_stale():
    """The silence before a new daemon was the old run's: its connection is not stale, its messages are live."""
    pub = Pub()
    watcher, lines = watch(pub)
    try:
        keep_sending(pub, "status", lambda i: status("run A", True, 5), lambda: watcher.status is not None)
        frame = iter(range(10_000))
        keep_sending(pub, "poses", lambda i: poses(next(frame), rule=False), lambda: watcher.received >= 3)
        wait_for(lambda: watcher.headline()[0] == "live", 10, "live")
        pub.close()
        wait_for(lambda: watcher.headline()[0] == "gone", 10, "gone")
        time.sleep(1.5)  # three times stale_s since the old run's last message
        gone_at = len(lines)
        pub = Pub(watcher.address)
        wait_for(lambda: watcher.connected, 10, "the new connection")
        time.sleep(0.2)  # the headline is announced every 0.1 s
        assert watcher.headline()[0] == "connected", watcher.headline()
        keep_sending(pub, "status", lambda i: status("run B", True, 1), lambda: watcher.run == "run B")
        keep_sending(pub, "poses", lambda i: poses(next(frame), rule=False), lambda: watcher.received >= 3)
        wait_for(lambda: watcher.headline()[0] == "live", 10, "live again")
        time.sleep(0.2)
    finally:
        watcher.close()
        pub.close()
    after = [state for state, _ in lines[gone_at:]]
    assert "stale" not in after and after[-1] == "live", lines[gone_at:]


def test_a_peer_that_accepts_and_never_handshakes_is_named():
    """A TCP server that accepts and says nothing: no ZeroMQ handshake, no web server (a probe, once)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        held = []
        stop = threading.Event()

        def accept():
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except TimeoutError:
                    pass
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        lines: list[tuple[str, str]] = []
        watcher = StreamWatcher(address, handshake_wait_s=1.0, on_change=lambda state, line: lines.append((state, line)))
        watcher.start()
        try:
            wait_for(lambda: watcher.headline()[0] == "error", 20, "the error")
            assert watcher.headline()[1] == (
                f"{address} accepts connections but has not completed a ZeroMQ handshake in 1 s: "
                "is this the daemon's publisher.address (default tcp://127.0.0.1:5555)?")
            assert watcher.probe_result == "silent" and len(held) == 2  # ZeroMQ's connection and the probe's
        finally:
            watcher.close()
            stop.set()
            thread.join(5)
            for connection in held:
                connection.close()
    assert [state for state, _ in lines].count("error") == 1, lines


def test_the_probe_tells_a_zeromq_peer_from_nothing_and_reads_zeromq_addresses():
    pub = Pub()
    try:
        assert probe.probe(pub.address) == probe.OTHER  # ZeroMQ's greeting, not HTTP
    finally:
        pub.close()
    assert probe.probe(f"tcp://127.0.0.1:{free_port()}") == probe.UNREACHABLE
    assert probe.tcp_host_port("tcp://eth0;192.168.1.5:5555") == ("192.168.1.5", 5555)
    assert probe.tcp_host_port("tcp://[::1]:5555") == ("::1", 5555)
    assert probe.tcp_host_port("ipc:///tmp/rtpose") is None and probe.tcp_host_port("tcp://*:5555") is None


@pytest.mark.parametrize("parts, says", [
    ([b"poses " + msgpack.packb([1, 2, 3])], "is a list, not an rtpose map"),
    ([b"poses " + msgpack.packb({"frame": 1})], "lacks t, points"),
    ([b"poses \xc1not msgpack"], "is not msgpack"),
    ([b"status"], "a message with no topic"),
    ([b"poses", msgpack.packb({"frame": 1})], "a message of 2 frames"),
])
def test_messages_of_another_format_are_named(parts, says):
    pub = Pub()
    watcher = StreamWatcher(pub.address)
    watcher.start()
    try:
        def send_until():
            pub.socket.send_multipart(parts)
            return watcher.headline()[0] == "error"
        wait_for(send_until, 20, "the format error")
        line = watcher.headline()[1]
        assert line.startswith(f"{pub.address} does not carry an rtpose stream") and says in line, line
    finally:
        watcher.close()
        pub.close()


def test_preview_frames_are_downscaled_jpegs_of_the_frame(flies_video_path):
    with VideoReader(flies_video_path) as video:
        frame = video.read(100)
    jpeg, size = encode_preview(frame, 512, 80)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert size == (512, 512) and decoded.shape == (512, 512)
    reference = cv2.resize(frame, (512, 512), interpolation=cv2.INTER_AREA)
    assert np.abs(decoded.astype(int) - reference).mean() < 3.0  # JPEG at quality 80: close, not exact
    small = frame[:100, :60]
    assert encode_preview(small, 512, 80)[1] == (100, 60)  # never upscaled


def test_the_preview_encoder_keeps_to_its_rate_and_never_queues(flies_video_path):
    with VideoReader(flies_video_path) as video:
        frame = video.read(0)
    sent: list[dict] = []
    done = threading.Event()

    def send(topic, message):
        sent.append(message)
        done.set()
        return True

    encoder = PreviewEncoder(send, fps=5.0, width=256, quality=70)
    encoder.start()
    try:
        taken = [encoder.offer(i, float(i), frame) for i in range(200)]  # a burst, much faster than 5 FPS
        assert taken[0] and sum(taken) == 1
        assert done.wait(10)
        time.sleep(0.25)
        assert encoder.offer(500, 500.0, frame)  # due again after 1/fps
        wait_for(lambda: len(sent) == 2, 10, "the second preview")
    finally:
        encoder.close()
    assert [m["frame"] for m in sent] == [0, 500] and sent[0]["size"] == [256, 256]
    assert sent[0]["frame_size"] == [1024, 1024] and encoder.replaced == 0 and encoder.error is None


def test_a_poses_topic_named_like_another_topic_or_with_a_space_is_refused():
    with pytest.raises(RtposeError, match=r"publisher.topic: 'status' is the name of another topic"):
        load_protocol(DEMO, ["publisher.topic=status"])
    with pytest.raises(RtposeError, match=r"publisher.topic: 'my poses': no spaces"):
        load_protocol(DEMO, ["publisher.topic=my poses"])
    with pytest.raises(RtposeError, match=r"publisher.preview.quality"):
        load_protocol(DEMO, ["publisher.preview.quality=0"])
