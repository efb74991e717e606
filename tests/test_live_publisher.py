"""The publisher never waits for subscribers, and `rtpose listen` reads what it sends."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from rtpose.live.listen import listen
from rtpose.live.publisher import Publisher, message_for
from rtpose.live.records import FrameRecord
from rtpose.poses import Poses

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["female", "male"]


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def record(frame: int, n_nodes: int = 13) -> FrameRecord:
    rng = np.random.default_rng(frame)
    points = rng.uniform(0, 1024, (2, n_nodes, 2)).astype(np.float32)
    points[0, 3] = np.nan
    poses = Poses(points, rng.uniform(0, 1, (2, n_nodes)).astype(np.float32), np.ones(2, np.float32),
                  np.array([1, 0], np.int32), np.full((2, 2), 0.5, np.float32))
    t = 100.0 + frame / 150
    return FrameRecord(frame, frame, t, t + 0.001, t + 0.001, t + 0.0011, t + 0.02, t + 0.0201, t + 0.0202, poses,
                       {"head_to_abdomen": 1.5, "speed": float("nan")}, {"approach": True}, {"opto_led": 5.0},
                       {"opto_led": 5.0})


def test_message_map_has_exactly_the_documented_keys_and_nulls_for_nan():
    m = msgpack.unpackb(msgpack.packb(message_for(record(7), CLASSES)), raw=False)
    assert set(m) == {"frame", "t", "points", "point_scores", "identity", "features", "rules", "volts"}
    assert set(m["t"]) == {"exposure", "arrival", "infer_start", "infer_end", "output"}
    assert m["frame"] == 7 and m["identity"] == ["male", "female"]
    assert m["points"][0][3] is None and len(m["points"][1][3]) == 2
    assert m["features"] == {"head_to_abdomen": 1.5, "speed": None} and m["rules"] == {"approach": True}
    assert m["volts"] == {"opto_led": 5.0}


def test_a_subscriber_that_never_reads_does_not_slow_the_publisher():
    """ZeroMQ drops for the stalled subscriber at the high-water mark; every send returns at once."""
    address = free_address()
    publisher = Publisher(address, hwm=10, queue_size=256, class_names=CLASSES)
    publisher.start()
    context = zmq.Context()
    stalled = context.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.setsockopt(zmq.SUBSCRIBE, b"poses")
    stalled.connect(address)
    time.sleep(0.3)  # connected
    n = 20_000  # ~25 MB of messages: far more than the socket buffers hold
    start = time.monotonic()
    for i in range(n):
        while publisher._queue.qsize() > 200:  # pace like a camera would, so only the subscriber can fall behind
            time.sleep(0.0005)
        assert publisher.offer(record(i))
    publisher.close(timeout_s=30)
    elapsed = time.monotonic() - start
    assert publisher.overflow == 0 and publisher.sent + publisher.not_sent == n
    assert elapsed < 20 and publisher.max_send_s < 0.05, (elapsed, publisher.max_send_s)
    received = 0
    while stalled.poll(200):
        stalled.recv_multipart()
        received += 1
    assert received < n / 2, received  # the rest were dropped for it, not queued without end
    stalled.close(linger=0)
    context.term()


def test_listen_prints_a_line_per_message_and_records_to_a_file(tmp_path, capsys):
    address = free_address()
    publisher = Publisher(address, class_names=CLASSES)
    publisher.start()
    stop = threading.Event()

    def publish():
        i = 0
        while not stop.is_set():
            publisher.offer(record(i))
            i += 1
            time.sleep(0.005)

    feeder = threading.Thread(target=publish, daemon=True)
    feeder.start()
    try:
        lines = []

        class Out:
            def write(self, text):
                lines.append(text)

            def flush(self):
                pass

        assert listen(address, count=5, out=Out()) == 5
        printed = [line for line in "".join(lines).splitlines() if line]
        assert len(printed) == 5 and all(line.startswith("frame ") and "rules: approach" in line for line in printed)
        out = tmp_path / "stream.msgpack"
        assert listen(address, count=8, output=str(out)) == 8
        messages = list(msgpack.Unpacker(open(out, "rb"), raw=False))
        assert len(messages) == 8 and all(m["identity"] == ["male", "female"] for m in messages)
        assert [m["frame"] for m in messages] == sorted(m["frame"] for m in messages)
    finally:
        stop.set()
        feeder.join(2)
        publisher.close()


def test_rtpose_listen_stops_cleanly_on_ctrl_c():
    process = subprocess.Popen([sys.executable, "-m", "rtpose", "listen", free_address()], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    line = ""
    while "listening" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "0 message(s)" in err and "Traceback" not in err
