"""Poses on the network: a ZeroMQ PUB socket, one msgpack message per processed frame.

Subscribers (a plotting script, a second rig computer, ``rtpose listen``) must never
slow the loop, so the loop only ``offer``s a record to a bounded queue (a full queue
loses the record and counts it), and this module's thread does the encoding and a send
that never waits.

Message: one ZeroMQ frame, the topic, a space, then the payload, a msgpack map::

    b"poses " + msgpack

One frame, not ``[topic, payload]``, so that a subscriber can keep only the newest
message with ``ZMQ_CONFLATE``, which does not work with multipart messages. The payload:

    frame          int    index in the source (video frame, camera frame ID)
    t              map    exposure, arrival, infer_start, infer_end, output: monotonic seconds
    points         list   instances x nodes x [x, y] in pixels; a missing node is null
    point_scores   list   instances x nodes; null where missing
    identity       list   class name per instance (null when unassigned)
    features       map    name -> number, or null when it could not be computed
    rules          map    name -> bool
    volts          map    output name -> volts this frame's decision asked for

Two more topics carry what a live view needs (``rtpose view``), in the same one-frame
form; a subscriber to ``b"poses "`` (topic and space) does not get them, and the
protocol refuses a poses topic named like one of them:

- ``status`` (``rtpose.live.status``), twice a second from the supervising thread: the
  run's identity (protocol, model, engine, skeleton), frame counts and triggers so far;
  a last one with ``running: false`` when the run stops.
- ``preview`` (``rtpose.live.preview``), only with ``publisher.preview``: downscaled
  JPEG frames at a limited rate, encoded by their own thread.

Both reach the socket through the same bounded queue as the poses.

**Where messages wait, and how old they get.** Between the loop and a subscriber's
code, messages queue in: the publisher's queue (``queue_size``; it only fills when this
thread falls behind, and then loses records, counted as ``queue_overflow``); the PUB
socket's per-subscriber queue (``hwm`` messages; beyond it ZeroMQ drops *new* messages
for that subscriber, silently, so the publisher cannot count them); the kernel's TCP
send and receive buffers (hundreds of kilobytes: hundreds of messages, which no
high-water mark limits); and the SUB socket's queue (its ``RCVHWM``, 1000 messages by
default). A subscriber that reads slower than we publish therefore gets every message
in order until those fill, then a stream as old as all of them: seconds. Staleness is
bounded only on the subscriber's side: a subscriber that wants the newest pose sets
``ZMQ_CONFLATE`` (``rtpose listen --latest``); its socket then keeps only the last
message, its I/O thread keeps the kernel buffers drained, and what it reads is never
older than one transfer (milliseconds on one machine), whatever its pace. A subscriber
that wants every message must read at least as fast as we publish.

Subscribe with, e.g.::

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.CONFLATE, 1)             # newest message only (before connect)
    sub.setsockopt(zmq.SUBSCRIBE, b"poses ")    # topic and its space: not "poses_x"
    sub.connect("tcp://127.0.0.1:5555")
    topic, payload = split_message(sub.recv())  # or sub.recv().partition(b" ")
    message = msgpack.unpackb(payload)
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any, Callable, Sequence

import msgpack
import zmq

from rtpose import clock
from rtpose.errors import RtposeError
from rtpose.live.probe import tcp_parts
from rtpose.live.records import FrameRecord
from rtpose.live.worker import QueueWorker

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
PREVIEW_TOPIC = "preview"
STATUS_TOPIC = "status"
OTHER_TOPICS = (PREVIEW_TOPIC, STATUS_TOPIC)  # besides the poses topic


def frame_message(topic: bytes, payload: bytes) -> bytes:
    """One ZeroMQ frame: ``topic``, a space, ``payload`` (see the module docstring)."""
    return topic + b" " + payload


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """``(topic, payload)`` of a received frame.

    Raises:
        ValueError: the frame has no space after a topic.
    """
    topic, space, payload = data.partition(b" ")
    if not space:
        raise ValueError("not a 'topic payload' message")
    return topic, payload


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _points_or_none(points: list) -> list:
    """instances x nodes x [x, y] with a missing node (NaN) as None rather than [NaN, NaN]."""
    return [[None if x != x or y != y else [x, y] for x, y in instance] for instance in points]


def _scores_or_none(scores: list) -> list:
    return [[s if s == s else None for s in instance] for instance in scores]


def message_for(record: FrameRecord, class_names: Sequence[str]) -> dict[str, Any]:
    """The published map of one processed frame (see the module docstring)."""
    poses = record.poses
    return {
        "frame": int(record.frame),
        "t": {
            "exposure": record.exposure,
            "arrival": record.arrival,
            "infer_start": record.infer_start,
            "infer_end": record.infer_end,
            "output": record.output,
        },
        "points": _points_or_none(poses.points.tolist()),
        "point_scores": _scores_or_none(poses.point_scores.tolist()),
        "identity": [class_names[i] if 0 <= i < len(class_names) else None for i in poses.identity.tolist()],
        "features": {name: _finite_or_none(float(value)) for name, value in record.features.items()},
        "rules": {name: bool(state) for name, state in record.rules.items()},
        "volts": {name: float(volts) for name, volts in record.volts.items()},
    }


def web_server_line(address: str) -> str:
    """What ``rtpose view`` and ``rtpose listen`` say when the probe of ``address``
    (``rtpose.live.probe``) found a web server there."""
    return (f"{address} is a web server (HTTP), not a ZeroMQ publisher: is it a view's page port? the daemon's "
            f"stream is its publisher.address (default {DEFAULT_ADDRESS})")


def port_problem(address: str) -> str | None:
    """What is wrong with a ``tcp://HOST:PORT`` address's port, or None.

    ZeroMQ itself takes ``tcp://127.0.0.1:99999`` for a connect and retries for ever;
    this says at once that 99999 is no TCP port. Other transports (ipc, inproc) and
    ``*`` (any free port, for a bind) pass.
    """
    parts = tcp_parts(address)
    if parts is None:
        return None
    port = parts[1]
    if port == "*" or (port.isdigit() and 0 < int(port) < 65536):
        return None
    return f"{address}: port {port} is not a TCP port (1-65535)"


def check_bindable(address: str) -> None:
    """Bind a PUB socket to ``address`` and let go of it at once: is the address free here?

    A check made before a run (``rtpose.live.preflight``); ZeroMQ sets ``SO_REUSEADDR``
    on its listeners, so the run's own bind right after is not refused.

    Raises:
        RtposeError: the address is in use, malformed, or not an address of this machine.
    """
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(address)
    except zmq.ZMQError as exc:
        hint = " (is another rtpose run or program publishing there?)" if exc.errno == zmq.EADDRINUSE else ""
        raise RtposeError(f"cannot bind {address} ({exc}){hint}") from None
    finally:
        socket.close(linger=0)
        context.term()


class Publisher(QueueWorker[FrameRecord]):
    """A PUB socket owned by one thread, fed through a bounded queue (``offer`` never waits)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, topic: str = "poses", hwm: int = 100,
                 queue_size: int = 256, class_names: Sequence[str] = (),
                 on_error: Callable[[BaseException], None] | None = None):
        super().__init__("rtpose-publisher", queue_size, batch_max=1, on_error=on_error)
        self.address = address
        self.topic = topic.encode()
        self.hwm = hwm
        self.class_names = list(class_names)
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self.sent = 0
        self.not_sent = 0  # send refused by ZeroMQ (would block; a PUB socket drops at its HWM without telling)
        self.max_send_s = 0.0
        self.endpoint = ""  # what was bound (tcp://127.0.0.1:PORT, after a wildcard port too)
        self.other_topics: dict[str, dict[str, int]] = {}  # topic -> offered, sent, lost (status, preview)

    def start(self) -> None:
        """Bind (in the publisher thread) and wait for it; a bad or busy address raises here.

        Raises:
            RtposeError: The address cannot be bound (busy, or not an address of this machine).
        """
        self.start_thread()
        self._bound.wait(10.0)
        if self._bind_error is not None:
            self.stop(1.0)
            raise RtposeError(f"publisher: cannot bind {self.address} ({self._bind_error})")

    def offer_message(self, topic: str, message: dict[str, Any]) -> bool:
        """Queue a map for another topic (``status``, ``preview``) without waiting; packed in this thread.

        It shares the poses' bounded queue; a full queue loses it, counted in
        ``other_topics[topic]["lost"]`` (not in ``overflow``, which counts poses).
        """
        counts = self.other_topics.setdefault(topic, {"offered": 0, "sent": 0, "lost": 0})
        counts["offered"] += 1
        try:
            self._queue.put_nowait((topic.encode(), message, counts))
            return True
        except queue.Full:
            counts["lost"] += 1
            return False

    def setup(self) -> None:
        """Create the socket and bind it, in the thread that will use it (ZeroMQ sockets are not thread-safe)."""
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        try:
            self._socket.setsockopt(zmq.SNDHWM, self.hwm)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.bind(self.address)
            self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._bind_error = exc  # start() raises it in the caller's thread; nothing to serve
            self._stop.set()
        finally:
            self._bound.set()

    def handle(self, batch: list[FrameRecord]) -> None:
        """Encode and send, never waiting: a send ZeroMQ refuses is counted in ``not_sent``."""
        for record in batch:
            if isinstance(record, tuple):  # offer_message
                topic, message, counts = record
                try:
                    self._socket.send(frame_message(topic, msgpack.packb(message, use_bin_type=True)),
                                      flags=zmq.NOBLOCK)
                    counts["sent"] += 1
                except zmq.Again:
                    counts["lost"] += 1
                continue
            payload = msgpack.packb(message_for(record, self.class_names), use_bin_type=True)
            start = clock.now()
            try:
                self._socket.send(frame_message(self.topic, payload), flags=zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.not_sent += 1
            self.max_send_s = max(self.max_send_s, clock.now() - start)

    def cleanup(self) -> None:
        """Close the socket at once (queued messages for slow subscribers are dropped) and the context."""
        if self._socket is not None:
            self._socket.close(linger=0)
        if self._context is not None:
            self._context.term()

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (up to ``timeout_s``), then close the socket."""
        self.stop(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"address": self.endpoint or self.address, "offered": self.offered, "sent": self.sent,
                "queue_overflow": self.overflow, "not_sent": self.not_sent,
                "max_send_ms": round(self.max_send_s * 1000.0, 3),
                "other_topics": {topic: dict(counts) for topic, counts in self.other_topics.items()}}
