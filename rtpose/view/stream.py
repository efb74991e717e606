"""The view's side of the daemon's stream: one ZeroMQ SUB socket, read by one thread.

``StreamWatcher`` subscribes to every topic of one address (``poses``, ``status``,
``preview``; see ``rtpose.live.publisher``), checks that each message is what rtpose
publishes, and keeps what a page shows: the latest poses, the latest preview and the
poses of its frame, a timeline of rule states and output volts, latency histograms,
rates, trigger events and the run's identity. A socket monitor (ZeroMQ's
``zmq_socket_monitor``) says whether anything is connected at the address, so the page
can tell a daemon that is not running from a stream that went quiet, and a peer that
is not ZeroMQ at all (a failed handshake) from one that speaks another format. When a
connection stays up without a ZeroMQ handshake, or the first messages are not rtpose's,
the address is probed once with a plain HTTP request (``rtpose.live.probe``): a web
server there (an ``rtpose view``'s page port, say) is named as such.

Being one more subscriber, the view cannot slow the daemon: the publisher drops
messages for a subscriber that falls behind (its high-water mark) and never waits.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any, Callable

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from rtpose import clock
from rtpose.live.publisher import DEFAULT_ADDRESS, PREVIEW_TOPIC, STATUS_TOPIC, split_message, web_server_line
from rtpose.live import probe

POSES_KEYS = ("frame", "t", "points", "point_scores", "identity", "rules")
STATUS_KEYS = ("run", "running", "frames", "skeleton")
PREVIEW_KEYS = ("frame", "frame_size", "size", "jpeg")
# Latency histograms: log-spaced bins, 5% wide, from 0.05 ms to about 12 s (GPU inference
# and a starved CPU fit on one axis); the first and last bins hold what falls outside.
HISTOGRAM_LOW_MS = 0.05
HISTOGRAM_RATIO = 1.05
HISTOGRAM_BINS = 256
TIMELINE_S = 40.0  # kept; the page shows the last 30 s
RATE_WINDOW_S = 2.0
MAX_EVENTS = 50
HANDSHAKE_WAIT_S = 3.0  # connected this long without a ZeroMQ handshake: probe what answers
HANDSHAKE_FAILED_SHOW_S = 0.3  # a failed handshake is said once the connection's messages are in

_HANDSHAKE_FAILED = tuple(getattr(zmq, name) for name in (
    "EVENT_HANDSHAKE_FAILED_NO_DETAIL", "EVENT_HANDSHAKE_FAILED_PROTOCOL", "EVENT_HANDSHAKE_FAILED_AUTH")
    if hasattr(zmq, name))


class StreamFormatError(ValueError):
    """A message that is not what an rtpose daemon publishes."""


def check_message(topic: str, message: Any, poses_topic: str) -> None:
    """Raise ``StreamFormatError`` unless ``message`` has the keys of its topic's map."""
    keys = {poses_topic: POSES_KEYS, STATUS_TOPIC: STATUS_KEYS, PREVIEW_TOPIC: PREVIEW_KEYS}[topic]
    if not isinstance(message, dict):
        raise StreamFormatError(f"a '{topic}' message is a {type(message).__name__}, not an rtpose map")
    missing = [key for key in keys if key not in message]
    if missing:
        raise StreamFormatError(f"a '{topic}' message lacks {', '.join(missing)}: not an rtpose {topic} map")


class _Histogram:
    """Counts of milliseconds in log-spaced bins: bin k holds [LOW * RATIO**k, LOW * RATIO**(k+1))."""

    def __init__(self) -> None:
        self.counts = [0] * HISTOGRAM_BINS

    def add(self, ms: float) -> None:
        if math.isfinite(ms) and ms >= 0:
            k = 0 if ms <= HISTOGRAM_LOW_MS else int(math.log(ms / HISTOGRAM_LOW_MS) / math.log(HISTOGRAM_RATIO))
            self.counts[min(HISTOGRAM_BINS - 1, k)] += 1


class StreamWatcher:
    """Subscribe to ``address`` in a thread and keep the state of the run it publishes.

    Args:
        address: the daemon's publisher address, e.g. ``tcp://127.0.0.1:5555``.
        topic: the daemon's poses topic (``publisher.topic``).
        stale_s: no message for this long while a run is going: the stream is stale.
        on_change: called from the thread with one line whenever the state's headline
            changes (``rtpose view`` prints it).
        handshake_wait_s: connected this long (seconds) without a ZeroMQ handshake: the
            address is probed (``rtpose.live.probe``) and the headline says what answers.

    Raises:
        ValueError: from ``start`` when ZeroMQ refuses the address (a malformed one).
    """

    def __init__(self, address: str, topic: str = "poses", stale_s: float = 2.0,
                 on_change: Callable[[str, str], None] = lambda state, line: None,
                 handshake_wait_s: float = HANDSHAKE_WAIT_S):
        self.address, self.topic, self.stale_s = address, topic, stale_s
        self.handshake_wait_s = handshake_wait_s
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        # connection
        self.connected = False
        self.connected_at: float | None = None  # our clock, at the current connection
        self.handshaken = False  # the current connection's ZeroMQ handshake succeeded
        self.ever_connected = False
        self.handshake_failures = 0  # since the last handshake that succeeded
        self.handshake_failed_at: float | None = None  # the first of those
        # the one probe of the address (rtpose.live.probe): why it ran, and what answered
        self.probe_reason: str | None = None  # "handshake" (none in handshake_wait_s) or "format"
        self.probe_result: str | None = None  # None while it runs
        self.no_handshake = False  # the probe found no web server and no handshake came since
        self.retrying = False  # ZeroMQ found nothing listening and retries
        self.format_error: str | None = None
        self.other_topics: collections.Counter[str] = collections.Counter()
        self.last_message_at: float | None = None  # our clock
        self.valid_messages = 0
        self._headline = ("", "")
        self._reset_run(None)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect (ZeroMQ connects in the background and retries) and start the reader thread."""
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 1000)
        socket.setsockopt(zmq.RECONNECT_IVL, 200)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        socket.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: unknown ones tell us it is not rtpose's stream
        monitor = socket.get_monitor_socket()
        try:
            socket.connect(self.address)
        except zmq.ZMQError as exc:
            socket.disable_monitor()
            monitor.close(0)
            socket.close(0)
            raise ValueError(f"{self.address}: not a ZeroMQ address like tcp://127.0.0.1:5555 ({exc})") from None
        self._socket = socket
        self._thread = threading.Thread(target=self._run, args=(socket, monitor), name="rtpose-view-stream",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._context.term()

    def _run(self, socket: zmq.Socket, monitor: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if monitor in ready:
                    self._on_monitor(recv_monitor_message(monitor))
                if socket in ready:
                    for _ in range(200):  # drain what is there, then look at the monitor again
                        try:
                            parts = socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_message(parts, clock.now())
                self._maybe_probe(clock.now())
                self._announce()
        finally:
            socket.disable_monitor()
            monitor.close(0)
            socket.close(0)

    # -- events ------------------------------------------------------------------------

    def _on_monitor(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        now = clock.now()
        with self._lock:
            if kind == zmq.EVENT_CONNECTED:
                self.connected, self.retrying = True, False
                self.connected_at, self.handshaken = now, False
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.ever_connected, self.handshake_failures = True, 0
                self.handshaken, self.no_handshake, self.handshake_failed_at = True, False, None
            elif kind == zmq.EVENT_DISCONNECTED:
                self.connected = False
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                self.retrying = True
            elif kind in _HANDSHAKE_FAILED:
                self.handshake_failures += 1
                if self.handshake_failed_at is None:
                    self.handshake_failed_at = now
                self.connected = False

    def _maybe_probe(self, now: float) -> None:
        """Probe the address once, in a thread, when it is up without a handshake or sent garbage first."""
        with self._lock:
            if self.probe_reason is not None or probe.tcp_host_port(self.address) is None:
                return
            if self.connected and not self.handshaken and self.connected_at is not None \
                    and now - self.connected_at >= self.handshake_wait_s:
                self.probe_reason = "handshake"
            elif self.format_error is not None and not self.valid_messages:
                self.probe_reason = "format"
            else:
                return
        threading.Thread(target=self._probe, name="rtpose-view-probe", daemon=True).start()

    def _probe(self) -> None:
        result = probe.probe(self.address)
        with self._lock:
            self.probe_result = result
            # a handshake that came while the probe ran clears the doubt
            self.no_handshake = self.probe_reason == "handshake" and result != probe.HTTP and not self.handshaken

    def _on_message(self, parts: list[bytes], now: float) -> None:
        with self._lock:
            self.last_message_at = now
            try:
                if len(parts) != 1:
                    raise StreamFormatError(f"a message of {len(parts)} frames, not one 'topic payload' frame")
                try:
                    topic_bytes, payload = split_message(parts[0])
                except ValueError:
                    raise StreamFormatError("a message with no topic: not 'topic payload'") from None
                topic = topic_bytes.decode("utf-8", "replace")
                if topic not in (self.topic, STATUS_TOPIC, PREVIEW_TOPIC):
                    self.other_topics[topic[:40]] += 1
                    if not self.valid_messages:
                        raise StreamFormatError(
                            f"messages on topic(s) {', '.join(sorted(self.other_topics))}, none on "
                            f"'{self.topic}', '{STATUS_TOPIC}' or '{PREVIEW_TOPIC}'")
                    return
                try:
                    message = msgpack.unpackb(payload, raw=False)
                except Exception as exc:
                    raise StreamFormatError(f"a '{topic}' message is not msgpack ({exc})") from None
                check_message(topic, message, self.topic)
                self.valid_messages += 1
                self.format_error = None
                if topic == STATUS_TOPIC:
                    self._on_status(message, now)
                elif topic == PREVIEW_TOPIC:
                    self._on_preview(message)
                else:
                    self._on_poses(message, now)
            except StreamFormatError as exc:
                self.format_error = f"{self.address} does not carry an rtpose stream: {exc}"
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                self.format_error = f"{self.address}: a malformed rtpose message ({type(exc).__name__}: {exc})"

    def _reset_run(self, run: str | None) -> None:
        self.run = run
        self.status: dict[str, Any] | None = None
        self.status_at: float | None = None
        self.poses: dict[str, Any] | None = None
        self.poses_by_frame: collections.OrderedDict[int, dict] = collections.OrderedDict()
        self.preview: dict[str, Any] | None = None
        self.preview_poses: dict[str, Any] | None = None
        self.preview_seq = 0
        self.samples: collections.deque[list] = collections.deque()
        self.sample_seq = 0
        self.received = 0
        self.arrivals: collections.deque[float] = collections.deque()
        self.histograms = {"inference": _Histogram(), "exposure_to_output": _Histogram()}
        self.rule_changes: dict[str, int] = {}
        self.rule_states: dict[str, bool] = {}
        self.last_volts: dict[str, float] = {}
        self.events: collections.deque[dict] = collections.deque(maxlen=MAX_EVENTS)
        self.frame_history: collections.deque[tuple[float, dict]] = collections.deque()

    def _on_status(self, message: dict[str, Any], now: float) -> None:
        if message["run"] != self.run:
            if self.run is None and self.status is None:  # poses of this run came first: keep them
                self.run = message["run"]
            else:
                self._reset_run(message["run"])
        self.status, self.status_at = message, now
        self.frame_history.append((now, message["frames"]))
        while self.frame_history and now - self.frame_history[0][0] > RATE_WINDOW_S + 0.6:
            self.frame_history.popleft()

    def _on_preview(self, message: dict[str, Any]) -> None:
        self.preview = message
        self.preview_poses = self.poses_by_frame.get(message["frame"])
        self.preview_seq += 1

    def _on_poses(self, message: dict[str, Any], now: float) -> None:
        if self.status is not None and not self.status["running"]:  # a new run, before its first status
            self._reset_run(None)
        self.poses = message
        self.received += 1
        self.poses_by_frame[message["frame"]] = message
        while len(self.poses_by_frame) > 300:
            self.poses_by_frame.popitem(last=False)
        self.arrivals.append(now)
        while now - self.arrivals[0] > RATE_WINDOW_S:
            self.arrivals.popleft()
        t = message["t"]
        if t.get("infer_end") is not None and t.get("infer_start") is not None:
            self.histograms["inference"].add(1000.0 * (t["infer_end"] - t["infer_start"]))
        if t.get("output") is not None and t.get("exposure") is not None:
            self.histograms["exposure_to_output"].add(1000.0 * (t["output"] - t["exposure"]))
        rules = {name: bool(state) for name, state in message["rules"].items()}
        for name, state in rules.items():
            if name in self.rule_states and self.rule_states[name] != state:
                self.rule_changes[name] = self.rule_changes.get(name, 0) + 1
            self.rule_changes.setdefault(name, 0)
        self.rule_states = rules
        volts = {name: float(v) for name, v in (message.get("volts") or {}).items()}
        for name, value in volts.items():
            before = self.last_volts.get(name, 0.0)
            if value != before and (before == 0.0 or value == 0.0):
                self.events.append({"t": t.get("output"), "frame": message["frame"], "output": name,
                                    "volts": value, "kind": "on" if value != 0.0 else "off"})
        self.last_volts = volts
        self.sample_seq += 1
        self.samples.append([self.sample_seq, t.get("output"), message["frame"], rules, volts])
        while self.samples and self.samples[-1][1] is not None and self.samples[0][1] is not None \
                and self.samples[-1][1] - self.samples[0][1] > TIMELINE_S:
            self.samples.popleft()

    # -- what the page shows -----------------------------------------------------------

    def headline(self, now: float | None = None) -> tuple[str, str]:
        """(state, one line): connecting, waiting, error, connected, live, stale, stopped or gone."""
        now = clock.now() if now is None else now
        with self._lock:
            return self._headline_locked(now)

    def _headline_locked(self, now: float) -> tuple[str, str]:
        address = self.address
        quiet = None if self.last_message_at is None else now - self.last_message_at
        if not self.valid_messages and self.probe_result == probe.HTTP:
            return "error", web_server_line(address)
        if self.probe_reason is not None and self.probe_result is None and not self.valid_messages:
            return "connected", f"connected to {address}; checking what answers there"
        if self.no_handshake:
            return "error", (f"{address} accepts connections but has not completed a ZeroMQ handshake in "
                             f"{self.handshake_wait_s:g} s: is this the daemon's publisher.address "
                             f"(default {DEFAULT_ADDRESS})?")
        if self.format_error is not None and (quiet is None or quiet < 5.0 or not self.valid_messages):
            return "error", self.format_error
        if self.handshake_failures and self.handshake_failed_at is not None \
                and now - self.handshake_failed_at >= HANDSHAKE_FAILED_SHOW_S:
            return "error", (f"{address} answers, but not as a ZeroMQ publisher (the ZeroMQ handshake "
                             "failed): is this the daemon's publisher.address?")
        status = self.status
        if status is not None and not status["running"]:
            reason = status.get("stop_reason") or "stopped"
            error = f": {status['error']}" if status.get("error") else ""
            return "stopped", (f"the daemon stopped ({reason}{error}); {self._counts_text(status)}; "
                               f"waiting for the next run on {address}")
        if not self.connected:
            if self.ever_connected and self.valid_messages:
                return "gone", (f"the daemon went away without saying it stopped (crashed or killed?); "
                                f"reconnecting to {address}")
            if self.retrying:
                return "waiting", f"nothing answers at {address}: is the daemon running? (retrying)"
            return "connecting", f"connecting to {address}"
        if quiet is None or (self.connected_at is not None and self.last_message_at < self.connected_at):
            # nothing on this connection yet: after a daemon went away, the silence was the old run's
            return "connected", f"connected to {address}; no message yet"
        if quiet > self.stale_s:
            return "stale", f"stale: no message for {quiet:.1f} s from {address}"
        if self.poses is None:
            return "connected", f"connected to {address}; status only, no poses yet"
        return "live", f"live: {self.protocol_name() or 'a run'} on {address}"

    def protocol_name(self) -> str:
        return str(((self.status or {}).get("protocol") or {}).get("name") or "")

    @staticmethod
    def _counts_text(status: dict[str, Any]) -> str:
        frames = status.get("frames") or {}
        return (f"{frames.get('acquired', 0)} frames acquired, {frames.get('processed', 0)} processed, "
                f"{frames.get('dropped', 0)} dropped")

    def _announce(self) -> None:
        state, line = self.headline()
        key = (state, line if state in ("error", "waiting", "stopped", "gone") else "")
        if key != self._headline:
            self._headline = key
            self._on_change(state, line)

    def snapshot(self, after_sample: int = 0, after_preview: int = 0) -> tuple[dict[str, Any], bytes | None]:
        """The page's state as a JSON-ready map, and the preview JPEG if newer than ``after_preview``.

        ``after_sample``: the last timeline sample the page has (``samples`` holds the newer ones;
        a page that fell behind by more than the kept timeline gets what is kept).
        """
        now = clock.now()
        with self._lock:
            state, line = self._headline_locked(now)
            poses = self.poses
            # per second: acquired, processed, dropped from the daemon's counters (status); received: here
            rates = {"acquired": None, "processed": None, "dropped": None, "received": None}
            if len(self.arrivals) > 1:
                span = self.arrivals[-1] - self.arrivals[0]
                rates["received"] = (len(self.arrivals) - 1) / span if span > 0 else None
            if len(self.frame_history) > 1:
                (t0, f0), (t1, f1) = self.frame_history[0], self.frame_history[-1]
                if t1 > t0:
                    for key in ("acquired", "processed", "dropped"):
                        rates[key] = (f1.get(key, 0) - f0.get(key, 0)) / (t1 - t0)
            if self.sample_seq - after_sample > len(self.samples) or after_sample > self.sample_seq:
                after_sample = self.sample_seq - len(self.samples)
            new_samples = list(self.samples)[len(self.samples) - (self.sample_seq - after_sample):] \
                if self.sample_seq > after_sample else []
            jpeg = None
            preview = None
            if self.preview is not None and self.preview_seq != after_preview:
                jpeg = self.preview["jpeg"]
                preview = {key: self.preview[key] for key in ("frame", "frame_size", "size")}
                preview["poses"] = _drawable(self.preview_poses)
            data = {
                "state": state, "headline": line, "address": self.address, "now": now,
                "run": self.run, "status": self.status,
                "status_age_s": None if self.status_at is None else now - self.status_at,
                "quiet_s": None if self.last_message_at is None else now - self.last_message_at,
                "received": self.received, "rates": rates,
                "latest": _drawable(poses),
                "rule_states": dict(self.rule_states), "rule_changes": dict(self.rule_changes),
                "volts": dict(self.last_volts), "events": list(self.events)[-12:],
                "samples": new_samples, "sample_seq": self.sample_seq,
                "preview": preview, "preview_seq": self.preview_seq,
                "histograms": {"low_ms": HISTOGRAM_LOW_MS, "ratio": HISTOGRAM_RATIO,
                               **{name: list(h.counts) for name, h in self.histograms.items()}},
            }
        return data, jpeg


def _drawable(poses: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a poses message the page draws."""
    if poses is None:
        return None
    t = poses.get("t") or {}
    return {"frame": poses["frame"], "points": poses["points"], "point_scores": poses["point_scores"],
            "identity": poses["identity"], "features": poses.get("features") or {},
            "exposure": t.get("exposure"), "output": t.get("output")}
