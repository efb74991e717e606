"""Poses on the network: a ZeroMQ PUB socket, one msgpack message per processed frame.

Subscribers (a plotting script, a second rig computer, ``rtpose listen``) must never
slow the loop, so the loop only ``offer``s a record to a bounded queue (a full queue
loses the record and counts it), this module's thread does the encoding and the send,
and the socket's send high-water mark makes ZeroMQ drop messages for a subscriber that
falls behind instead of buffering without end.

Message: two frames, ``[topic, payload]``; the payload is a msgpack map::

    frame          int    index in the source (video frame, camera frame ID)
    t              map    exposure, arrival, infer_start, infer_end, output: monotonic seconds
    points         list   instances x nodes x [x, y] in pixels; a missing node is null
    point_scores   list   instances x nodes; null where missing
    identity       list   class name per instance (null when unassigned)
    features       map    name -> number, or null when it could not be computed
    rules          map    name -> bool
    volts          map    output name -> volts this frame's decision asked for

Two more topics carry what a live view needs (``rtpose view``); a subscriber to
``poses`` does not get them (their names are not prefixes of each other, which the
protocol checks):

- ``status`` (``rtpose.live.status``), twice a second from the supervising thread: the
  run's identity (protocol, model, engine, skeleton), frame counts and triggers so far;
  a last one with ``running: false`` when the run stops.
- ``preview`` (``rtpose.live.preview``), only with ``publisher.preview``: downscaled
  JPEG frames at a limited rate, encoded by their own thread.

Both reach the socket through the same bounded queue as the poses.

Subscribe with, e.g.::

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.connect("tcp://127.0.0.1:5555")
    sub.setsockopt(zmq.SUBSCRIBE, b"poses")
    topic, payload = sub.recv_multipart()
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
from rtpose.live.records import FrameRecord

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
PREVIEW_TOPIC = "preview"
STATUS_TOPIC = "status"
OTHER_TOPICS = (PREVIEW_TOPIC, STATUS_TOPIC)  # besides the poses topic


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


class Publisher:
    """A PUB socket owned by one thread, fed through a bounded queue."""

    def __init__(self, address: str = DEFAULT_ADDRESS, topic: str = "poses", hwm: int = 100,
                 queue_size: int = 256, class_names: Sequence[str] = (),
                 on_error: Callable[[BaseException], None] = lambda exc: None):
        self.address = address
        self._on_error = on_error
        self.topic = topic.encode()
        self.hwm = hwm
        self.class_names = list(class_names)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the thread early, if anything
        self.offered = 0
        self.overflow = 0  # records the loop could not queue (publisher thread behind)
        self.sent = 0
        self.not_sent = 0  # send refused by ZeroMQ (would block)
        self.max_send_s = 0.0
        self.endpoint = ""  # what was bound (tcp://127.0.0.1:PORT, after a wildcard port too)
        self.other_topics: dict[str, dict[str, int]] = {}  # topic -> offered, sent, lost (status, preview)

    def start(self) -> None:
        """Bind (in the publisher thread) and wait for it; a bad or busy address raises here."""
        self._thread = threading.Thread(target=self._run, name="rtpose-publisher", daemon=True)
        self._thread.start()
        self._bound.wait(10.0)
        if self._bind_error is not None:
            self._thread.join(1.0)
            raise RtposeError(f"publisher: cannot bind {self.address} ({self._bind_error})")

    def offer(self, record: FrameRecord) -> bool:
        """Queue a record without waiting; False (and counted) when the queue is full."""
        self.offered += 1
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self.overflow += 1
            return False

    def offer_message(self, topic: str, message: dict[str, Any]) -> bool:
        """Queue a map for another topic (``status``, ``preview``) without waiting; packed in this thread."""
        counts = self.other_topics.setdefault(topic, {"offered": 0, "sent": 0, "lost": 0})
        counts["offered"] += 1
        try:
            self._queue.put_nowait((topic.encode(), message, counts))
            return True
        except queue.Full:
            counts["lost"] += 1
            return False

    def _run(self) -> None:
        context = zmq.Context()
        socket = context.socket(zmq.PUB)
        try:
            socket.setsockopt(zmq.SNDHWM, self.hwm)
            socket.setsockopt(zmq.LINGER, 0)
            try:
                socket.bind(self.address)
                self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
            except zmq.ZMQError as exc:
                self._bind_error = exc
                return
            finally:
                self._bound.set()
            self._serve(socket)
        except BaseException as exc:
            self.error = exc
            self._on_error(exc)
        finally:
            socket.close(linger=0)
            context.term()

    def _serve(self, socket: zmq.Socket) -> None:
        while True:
            try:
                record = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if isinstance(record, tuple):  # offer_message
                topic, message, counts = record
                try:
                    socket.send_multipart([topic, msgpack.packb(message, use_bin_type=True)], flags=zmq.NOBLOCK)
                    counts["sent"] += 1
                except zmq.Again:
                    counts["lost"] += 1
                continue
            payload = msgpack.packb(message_for(record, self.class_names), use_bin_type=True)
            start = clock.now()
            try:
                socket.send_multipart([self.topic, payload], flags=zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.not_sent += 1
            self.max_send_s = max(self.max_send_s, clock.now() - start)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (up to ``timeout_s``), then close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"address": self.endpoint or self.address, "offered": self.offered, "sent": self.sent,
                "queue_overflow": self.overflow, "not_sent": self.not_sent,
                "max_send_ms": round(self.max_send_s * 1000.0, 3),
                "other_topics": {topic: dict(counts) for topic, counts in self.other_topics.items()}}
