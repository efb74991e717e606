"""The publisher never waits for subscribers, and `rtpose listen` reads what it sends."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import msgpack
import numpy as np
import pytest
import zmq

from rtpose.errors import RtposeError
from rtpose.live.listen import listen
from rtpose import clock
from rtpose.live.publisher import Publisher, message_for, split_message
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
    """ZeroMQ drops for the stalled subscriber at the high-water mark; no send waits for it.

    A send that waited for the stalled subscriber would wait until it read, which it never
    does: the run would not finish and a send would take seconds. The bounds are generous so
    that scheduling on a loaded machine cannot fail the test, and a blocking send still does.
    """
    address = free_address()
    publisher = Publisher(address, hwm=10, queue_size=256, class_names=CLASSES)
    publisher.start()
    context = zmq.Context()
    stalled = context.socket(zmq.SUB)
    try:
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 4096)
        stalled.setsockopt(zmq.SUBSCRIBE, b"poses ")
        stalled.connect(address)
        time.sleep(0.3)  # connected
        n = 20_000  # ~25 MB of messages: far more than the socket buffers hold
        start = time.monotonic()
        for i in range(n):
            while publisher._queue.qsize() > 200:  # pace like a camera would, so only the subscriber can fall behind
                time.sleep(0.0005)
            assert publisher.offer(record(i))
        publisher.close(timeout_s=60)
        elapsed = time.monotonic() - start
        assert publisher.overflow == 0 and publisher.sent + publisher.not_sent == n
        assert elapsed < 60 and publisher.max_send_s < 2.0, (elapsed, publisher.max_send_s)
        received = 0
        while stalled.poll(200):
            stalled.recv()
            received += 1
        assert received < n / 2, received  # the rest were dropped for it, not queued without end
    finally:
        publisher.close(timeout_s=5)
        stalled.close(linger=0)
        context.destroy(linger=0)


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
        out = tmp_path / "new folder" / "stream.msgpack"  # its folder is made
        assert listen(address, count=8, output=str(out)) == 8
        messages = list(msgpack.Unpacker(open(out, "rb"), raw=False))
        assert len(messages) == 8 and all(m["identity"] == ["male", "female"] for m in messages)
        from rtpose.cli import main as cli_main

        cli_out = tmp_path / "cli.msgpack"
        assert cli_main(["listen", address, "--count", "2", "-o", str(cli_out)]) == 0  # ended as asked
        assert len(list(msgpack.Unpacker(open(cli_out, "rb"), raw=False))) == 2
        assert [m["frame"] for m in messages] == sorted(m["frame"] for m in messages)
        # an existing file is refused before anything connects (nothing appended); --overwrite replaces it
        before = out.read_bytes()
        with pytest.raises(RtposeError, match="^" + re.escape(f"{out} already exists: give another -o, or "
                                                              "--overwrite to replace it") + "$"):
            listen(address, count=3, output=str(out))
        assert out.read_bytes() == before
        assert listen(address, count=3, output=str(out), overwrite=True) == 3
        assert len(list(msgpack.Unpacker(open(out, "rb"), raw=False))) == 3
    finally:
        stop.set()
        feeder.join(2)
        publisher.close()


class Lines:
    """A text stream that keeps what is written and signals when ``wanted`` appears in it."""

    def __init__(self, wanted: str = ""):
        self.text, self.wanted, self.seen = "", wanted, threading.Event()

    def write(self, text: str) -> None:
        self.text += text
        if self.wanted and self.wanted in self.text:
            self.seen.set()

    def flush(self) -> None:
        pass


def test_listen_says_once_that_nothing_arrived_and_keeps_waiting():
    """Nothing publishing: after ``quiet_s`` one line names the address and topic; the
    listener goes on waiting and receives the stream once a publisher binds there."""
    address = free_address()
    err, out = Lines("nothing has arrived yet"), Lines()
    connected = threading.Event()
    got: list[int] = []
    listener = threading.Thread(target=lambda: got.append(listen(address, count=3, out=out, err=err, quiet_s=0.5,
                                                                 on_connected=connected.set)), daemon=True)
    listener.start()
    assert connected.wait(30) and err.seen.wait(30), err.text
    assert f"nothing has arrived yet on {address} (topic poses)" in err.text and "still waiting" in err.text
    publisher = Publisher(address, class_names=CLASSES)
    publisher.start()
    try:
        deadline = time.monotonic() + 30
        i = 0
        while listener.is_alive() and time.monotonic() < deadline:
            publisher.offer(record(i))
            i += 1
            time.sleep(0.01)
        listener.join(5)
        assert got == [3] and out.text.count("frame ") == 3, (got, out.text)
        assert err.text.count("nothing has arrived yet") == 1  # said once
    finally:
        publisher.close()


def test_listen_at_a_web_server_says_it_is_one():
    """A view's page port (or any web server) given as the stream: named, as rtpose view names it."""
    port = free_address().rsplit(":", 1)[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = f"tcp://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server is up
            with socket.socket() as probe_socket:
                if probe_socket.connect_ex(("127.0.0.1", int(port))) == 0:
                    break
            time.sleep(0.1)
        err, stop = Lines("web server"), threading.Event()
        listener = threading.Thread(target=lambda: listen(address, out=Lines(), err=err, quiet_s=0.5, stop=stop),
                                    daemon=True)
        listener.start()
        assert err.seen.wait(30), err.text
        stop.set()
        listener.join(10)
        assert err.text.startswith(f"{address} is a web server (HTTP), not a ZeroMQ publisher: is it a view's page "
                                   "port?"), err.text
    finally:
        server.kill()
        server.wait()


def test_rtpose_listen_checks_the_address_before_saying_it_listens(capsys):
    from rtpose.cli import main as cli_main

    assert cli_main(["listen", "localhost:5555"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "tcp://localhost:5555" in err, err
    assert "listening" not in err


def test_rtpose_listen_help_states_the_address_and_topic_defaults(capsys):
    from rtpose.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["listen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "publisher.address" in text and "default tcp://127.0.0.1:5555" in text
    assert "publisher.topic (default poses)" in text


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_rtpose_listen_stops_cleanly_on_ctrl_c_or_sigterm_with_rtpose_runs_exit_status(signum, status):
    """Stopped by a signal, listen says what it received and exits 128 + the signal, as
    ``rtpose run`` does (130 Ctrl-C, 143 SIGTERM): a script sees it did not end on --count."""
    process = subprocess.Popen([sys.executable, "-m", "rtpose", "listen", free_address()], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    line = ""
    while "listening" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()
    process.send_signal(signum)
    _, err = process.communicate(timeout=10)
    assert process.returncode == status, err
    assert "0 message(s)" in err and "Traceback" not in err


# -- staleness: a subscriber slower than the stream (issue 13, item 5) ---------------------


class Feeder(threading.Thread):
    """Offers a record every 5 ms (200 Hz), each stamped with the time it is offered as its output time."""

    def __init__(self, publisher: Publisher):
        super().__init__(daemon=True)
        self.publisher, self.stop = publisher, threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.publisher.offer(attrs.evolve(record(i), output=clock.now()))
            i += 1
            time.sleep(0.005)


def slow_ages(address: str, conflate: bool, reads: int = 10, pause_s: float = 0.3) -> list[float]:
    """Age in seconds (receipt - output) of each message a subscriber reading every ``pause_s`` gets."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    if conflate:
        sub.setsockopt(zmq.CONFLATE, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"poses ")
    sub.connect(address)
    ages = []
    try:
        for _ in range(reads):
            assert sub.poll(10_000), "no message within 10 s"
            _, payload = split_message(sub.recv())
            ages.append(clock.now() - msgpack.unpackb(payload, raw=False)["t"]["output"])
            time.sleep(pause_s)  # a slow consumer: a plot, a second computer, a script
    finally:
        sub.close(linger=0)
        context.term()
    return ages


def test_a_slow_subscriber_with_conflate_gets_recent_poses_and_one_without_falls_behind():
    """hwm 1 and a subscriber reading every 0.3 s, as in the report: in order, what it reads
    ages by the time it spends per message; with CONFLATE, each message is the newest."""
    publisher = Publisher(free_address(), hwm=1, class_names=CLASSES)
    publisher.start()
    feeder = Feeder(publisher)
    feeder.start()
    try:
        address = publisher.endpoint
        latest = slow_ages(address, conflate=True)
        in_order = slow_ages(address, conflate=False)
    finally:
        feeder.stop.set()
        feeder.join(2)
        publisher.close()
    # 10 reads take >= 2.7 s; a message queued in order at the first read is that old at the last.
    assert max(latest) < 0.5, latest  # one transfer on 127.0.0.1, with generous room for a loaded machine
    assert in_order[-1] > 1.5, in_order  # the kernel and the SUB queue hold the backlog: why --latest exists


def test_rtpose_listen_latest_prints_only_recent_messages():
    publisher = Publisher(free_address(), hwm=1, class_names=CLASSES)
    publisher.start()
    feeder = Feeder(publisher)
    feeder.start()
    lines: list[str] = []

    class SlowTerminal:  # 0.3 s per line: far slower than the 200 Hz stream
        def write(self, text):
            if text.strip():
                lines.append(text)
                time.sleep(0.3)

        def flush(self):
            pass

    try:
        assert listen(publisher.endpoint, count=8, out=SlowTerminal(), latest=True) == 8
    finally:
        feeder.stop.set()
        feeder.join(2)
        publisher.close()
    late_ms = [float(line.split("received +")[1].split("ms")[0]) for line in lines]
    frames = [int(line.split()[1]) for line in lines]
    assert len(late_ms) == 8 and max(late_ms) < 500, lines
    # 2.1 s of reads of a stream of up to 200 Hz: most messages between were skipped, none repeated
    assert np.all(np.diff(frames) > 0) and frames[-1] - frames[0] > 3 * len(frames), frames


def test_status_and_preview_share_the_queue_and_a_poses_subscriber_gets_neither():
    address = free_address()
    publisher = Publisher(address, class_names=CLASSES)
    publisher.start()
    context = zmq.Context()
    poses_only, everything = context.socket(zmq.SUB), context.socket(zmq.SUB)
    poses_only.setsockopt(zmq.SUBSCRIBE, b"poses ")
    everything.setsockopt(zmq.SUBSCRIBE, b"")
    for sub in (poses_only, everything):
        sub.setsockopt(zmq.RCVTIMEO, 100)
        sub.connect(address)
    got: dict[bytes, list] = {b"poses": [], b"status": [], b"preview": []}
    only_poses_topics = set()
    try:
        deadline = time.monotonic() + 20
        i = 0
        while time.monotonic() < deadline and not all(len(v) >= 3 for v in got.values()):
            publisher.offer(record(i))
            publisher.offer_message("status", {"run": "r", "frames": {"processed": i}})
            publisher.offer_message("preview", {"frame": i, "jpeg": b"\xff\xd8" + bytes(100)})
            i += 1
            for sub, sink in ((everything, None), (poses_only, only_poses_topics)):
                while True:
                    try:
                        topic, payload = split_message(sub.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    if sink is not None:
                        sink.add(topic)
                    else:
                        got[topic].append(msgpack.unpackb(payload, raw=False))
            time.sleep(0.01)
    finally:
        publisher.close()
        poses_only.close(0)
        everything.close(0)
        context.term()
    assert all(len(v) >= 3 for v in got.values()), {k: len(v) for k, v in got.items()}
    assert only_poses_topics == {b"poses"}
    assert got[b"preview"][0]["jpeg"].startswith(b"\xff\xd8") and isinstance(got[b"status"][0]["frames"], dict)
    stats = publisher.stats()
    assert stats["other_topics"]["status"]["offered"] == stats["other_topics"]["preview"]["offered"] == i
    assert stats["other_topics"]["status"]["sent"] >= 3 and stats["sent"] >= 3


def test_rtpose_listen_refuses_an_existing_file_in_one_line_before_connecting(tmp_path):
    """`rtpose listen -o FILE` on an existing file (here a text file, which it used to append msgpack
    to): one line naming it, -o and --overwrite, exit 2, before the listening line; the file untouched."""
    notes = tmp_path / "notes.txt"
    notes.write_text("the experimenter's notes\n")
    # a process with a deadline: a listener that does not refuse would wait for a message without end
    done = subprocess.run([sys.executable, "-m", "rtpose", "listen", free_address(), "-o", str(notes), "--count", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {notes} already exists: give another -o, or --overwrite to replace it\n"
    assert notes.read_text() == "the experimenter's notes\n"


def test_listen_names_a_folder_output_and_mends_a_one_slash_address(tmp_path, capsys):
    from rtpose.cli import main as cli_main

    assert cli_main(["listen", "-o", str(tmp_path), "--overwrite"]) == 2
    assert capsys.readouterr().err == f"error: -o {tmp_path} is a folder: give a file name\n"
    assert cli_main(["listen", "tcp:/127.0.0.1:5555"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("; an address is TRANSPORT://HOST:PORT, e.g. tcp://127.0.0.1:5555")


def test_a_listener_stopped_before_any_message_leaves_no_file(tmp_path):
    """The recording is made at the first message: a listener stopped before one (no
    daemon there) leaves no empty file behind, so the same command can run again."""
    out = tmp_path / "new" / "rec.msgpack"
    stop = threading.Event()
    connected = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        assert listen(free_address(), output=str(out), stop=stop, on_connected=connected.set) == 0
    finally:
        timer.cancel()
    assert connected.is_set() and not out.exists()
