"""The closed loop: camera -> FrameSlot -> inference -> features -> rules -> DAQ, safely.

Threads, and who owns what:

- acquisition (``rtpose-camera``): ``camera.read`` -> ``FrameSlot.put``; counts the
  camera's own drops (gaps in ``Frame.seq``) and the frames the slot replaced.
- inference (``rtpose-inference``): ``FrameSlot.take`` -> ``engine.infer`` ->
  ``OutputStage.decide`` (features, rules, DAQ writes of changed channels) -> a
  ``FrameRecord`` offered to the publisher and recorder queues (never waits).
- output timer (``rtpose-output-timer``, in ``OutputStage``): pulse off edges on time.
- publisher, recorder: their own threads behind bounded queues; with
  ``publisher.preview``, a preview encoder thread (``rtpose.live.preview``) that the
  loop hands at most ``preview.fps`` frames a second.
- the caller's thread (the main thread under ``rtpose run``) supervises: duration,
  SIGINT/SIGTERM, the first exception of any thread, and two watchdogs (no frame for
  ``safety.camera_stall_s``; one inference running longer than
  ``safety.inference_stall_s``), then runs the one shutdown path. It also offers the
  ``status`` map (``rtpose.live.status``) to the publisher twice a second.

Safety: every way out of ``run`` -- end of duration, end of the source, Ctrl-C,
SIGTERM, an exception in any thread, a camera that stops delivering, a failure while
opening -- goes through ``_shutdown``, which first writes 0 V to every analog output
(``OutputStage.close`` -> ``Daq.zero_all``; after that no thread can write), then stops
the threads, closes the devices and lastly closes the recording. A thread that fails
zeroes the outputs itself at once rather than waiting for the supervisor's next look.
Signal handlers only set a flag: zeroing from a handler could deadlock on the DAQ lock.

Programmatic use (``rtpose.calibrate`` builds on this)::

    loaded = load_protocol("experiments/male_approach_replay.yaml", ["duration=3"])
    result = Daemon(loaded, capture_ai=True).run()     # blocks; returns after 0 V
    result.summary["latency_ms"]["overhead"]["p99"]
    recording = read_recording(result.recording)       # per-frame timestamps, poses, rules
    result.ai_trace.volts["opto_led_loopback"]          # the DAQ's analog input over the run

Devices may be passed in (``camera=``, ``daq=``, ``engine=``): the daemon opens them if
needed and zeroes the DAQ on every exit as always, but leaves a DAQ or engine it was
given open (read its analog input afterwards); a camera is always closed, since that is
what ends a blocked ``read``. A replayed frame the inference thread took just before that
close, and decodes after it (``CameraClosed``), is dropped for the shutdown: no error.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import attrs

from rtpose import __version__, clock
from rtpose.engine.base import Engine, check_frame_size, load_engine
from rtpose.engine.continuity import IdentityContinuity
from rtpose.errors import RtposeError
from rtpose.hw import AiTrace, Camera, CameraClosed, CameraTimeout, Daq, FrameLost, make_camera, make_daq
from rtpose.live.frameslot import FrameSlot
from rtpose.live.memory import limit_malloc_arenas
from rtpose.live.outputs import OutputsClosed, OutputStage
from rtpose.live.protocol import LoadedProtocol
from rtpose.live.preview import PreviewEncoder
from rtpose.live.publisher import STATUS_TOPIC, Publisher
from rtpose.live.recorder import Recorder
from rtpose.live.records import DropRecord, FrameRecord, LatencyHistogram, OutputEvent
from rtpose.live.runlog import RunLog
from rtpose.live.status import STATUS_PERIOD_S, status_message
from rtpose.live.summary import build_summary, safe_value
from rtpose.rules import TriggerProgram
from rtpose import jsonsafe

DROP_REASONS = ("camera", "replaced", "shutdown", "error", "lost")
# While one thread runs Python (the engine's pre- and post-processing), another waits up
# to the interpreter's switch interval (5 ms by default) for the GIL. The output timer
# must write a pulse's off edge within a fraction of a millisecond of its deadline, so
# the run uses a shorter interval (measured: off-edge lateness p90 3.7 ms -> 0.6 ms).
SWITCH_INTERVAL_S = 0.0005
RUN_LOG = "run.log"  # in the recording directory: see rtpose.live.runlog
EXIT_FAILED, EXIT_SETUP = 1, 2  # exit statuses: see RunResult.exit_code
EXIT_SIGNALLED = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}  # 130, 143

log = logging.getLogger(__name__)


class CameraStalled(RtposeError):
    """The camera delivered no frame for ``safety.camera_stall_s``."""


class InferenceStalled(RtposeError):
    """One inference took longer than ``safety.inference_stall_s`` (a hung runtime or GPU)."""


@attrs.define
class RunResult:
    """What ``Daemon.run`` returns once the outputs are at 0 V and the recording is closed."""

    summary: dict[str, Any]
    # duration, source ended, SIGINT, SIGTERM, requested (request_stop), camera stalled, inference stalled, error
    stop_reason: str
    error: str | None  # one line, when the run ended because something failed
    recording: Path | None  # the run directory
    final_volts: dict[str, float]  # every analog output after shutdown
    ai_trace: AiTrace | None  # with capture_ai=True: the DAQ's analog input over the run
    # the error is one a user can fix, found while opening, before any frame was acquired
    # (a publisher address in use, a recording directory that exists, a model that does not fit)
    setup_error: bool = False

    @property
    def exit_code(self) -> int:
        """``rtpose run``'s exit status: 0 ended as asked (duration, end of the source);
        130 Ctrl-C (SIGINT) and 143 SIGTERM, 128 + the signal's number as shells report
        it (the run was cut short, cleanly: 0 V, summary, recording); 2 a setup error
        found before acquisition started; 1 a failure during the run. 0 V in every case.
        """
        if self.error is not None:
            return EXIT_SETUP if self.setup_error else EXIT_FAILED
        return EXIT_SIGNALLED.get(self.stop_reason, 0)


def live_cpu_threads() -> int:
    """ONNX Runtime threads for a live run: every core but one.

    The camera thread (decoding, on a replay) and the loop need a core of their own. On
    2 cores at 150 FPS, giving ONNX Runtime both made inference no faster (p50 6.8 ms
    either way) but let decoding preempt the loop: overhead p99 1.5 ms and 193 of 1500
    frames dropped, against 0.14 ms and 77 with one thread.
    """
    return max(1, (os.cpu_count() or 1) - 1)


class Daemon:
    """One run of one protocol. Not reusable: make a new Daemon per run."""

    def __init__(self, loaded: LoadedProtocol, *, engine: Engine | None = None, camera: Camera | None = None,
                 daq: Daq | None = None, capture_ai: bool = False, handle_signals: bool = True,
                 on_status: Callable[[dict[str, Any]], None] | None = None):
        """``on_status``: called by the supervising thread (never the loop) with the
        ``status`` map (``rtpose.live.status``) twice a second while running, e.g. for
        ``rtpose run``'s terminal line; an exception it raises is logged once and the
        callback dropped, the run going on."""
        self.loaded = loaded
        self.on_status = on_status
        self.protocol = loaded.protocol
        self.capture_ai = capture_ai
        self.handle_signals = handle_signals
        self._owns_engine, self._owns_daq = engine is None, daq is None
        self.engine: Engine | None = engine
        self.camera: Camera | None = camera
        self.daq: Daq | None = daq
        self.program = TriggerProgram(self.protocol, loaded.spec.node_names, loaded.spec.class_names,
                                      self.protocol.arena.px_per_mm)
        self.slot: FrameSlot = FrameSlot()
        self.outputs: OutputStage | None = None
        self.publisher: Publisher | None = None
        self.preview: PreviewEncoder | None = None
        self.recorder: Recorder | None = None
        self.run_dir: Path | None = None
        self.run_log: RunLog | None = None

        self._stop = threading.Event()  # threads: finish now
        self._wake = threading.Event()  # supervisor: look again now (set by threads, never by signal handlers)
        self._processing_done = threading.Event()
        self._state_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._ran = False
        self._signal: str | None = None
        self._requested: str | None = None
        self._error: tuple[str, BaseException] | None = None
        self._opening = False
        self._setup_error = False  # the first error was a user's, raised while opening
        self._stop_reason = ""
        self._source_ended = False
        self.shutdown_problems: list[str] = []

        # counters and figures (each written by one thread)
        self.received = 0
        self.processed = 0
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self.last_arrival = 0.0
        self.inferring_since: float | None = None  # set while engine.infer runs (the inference watchdog)
        self.t_started_wall = ""
        self.t_camera_open: float | None = None
        self.t_stop: float | None = None
        self.t_zeroed: float | None = None
        self.latency = {name: LatencyHistogram() for name in
                        ("inference", "overhead", "slot_wait", "arrival_to_output", "exposure_to_output")}
        self.rule_true_frames = dict.fromkeys(self.program.rule_names, 0)
        self.continuity = (IdentityContinuity(loaded.spec.n_classes)
                           if self.protocol.model.identity_continuity else None)
        self.final_volts: dict[str, float] = {}
        self.ai_trace: AiTrace | None = None

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Open, run until a stop condition, shut down (0 V first); never raises for a run-time failure.

        Problems found while opening (a busy address, a camera that cannot open) end the
        run the same safe way and come back as ``RunResult.error``.
        """
        if self._ran:
            raise RtposeError("a Daemon runs once; make a new one")
        self._ran = True
        limit_malloc_arenas(1)  # before the engine and camera start threads: see rtpose.live.memory
        self.t_started_wall = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        previous_handlers = self._install_signal_handlers()
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_interval, SWITCH_INTERVAL_S))
        try:
            try:
                self._opening = True
                self._open()
                self._opening = False
                if self.t_camera_open is not None:
                    self._start_threads()
                    self._supervise()
                else:  # stopped (a signal, request_stop) while opening: the camera never opened
                    self._stop_reason = self._signal or self._requested or "stopped"
            except BaseException as exc:  # KeyboardInterrupt too: the outputs still go to 0 V
                self._fail("main", exc)
            finally:
                self._shutdown()
            result = self._result()
            log.info("stopped: %s; frames %s%s", result.stop_reason, self.frame_counts(),
                     f"; error: {result.error}" if result.error else "")
            return result
        finally:
            sys.setswitchinterval(previous_interval)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if self.run_log is not None:
                self.run_log.close()

    def request_stop(self, reason: str = "requested") -> None:
        """Stop the run from another thread (as Ctrl-C would); ``run`` then returns."""
        self._requested = reason
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """Counters so far, safe to read from another thread while running."""
        return {"received": self.received, "processed": self.processed, "dropped": sum(self.drops.values()),
                "triggers": self._trigger_count(), "running": self._ran and not self._stop.is_set()}

    @property
    def identity_followed_frames(self) -> int:
        """Frames whose identities came from continuity, not the identity head."""
        return self.continuity.followed if self.continuity is not None else 0

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> None:
        p, loaded = self.protocol, self.loaded
        if self.engine is None:
            options = {}
            if p.model.engine == "ort-cpu":
                options["threads"] = p.model.threads or live_cpu_threads()
            self.engine = load_engine(loaded.export_dir, p.model.engine, p.model.precision, **options)
        if self.camera is None:
            self.camera = make_camera(p.camera)  # not open yet: nothing is exposed before the DAQ is at 0 V
        if p.publisher.enabled:
            publisher = Publisher(p.publisher.address, p.publisher.topic, p.publisher.hwm, p.publisher.queue_size,
                                  loaded.spec.class_names, on_error=lambda exc: self._fail("publisher", exc))
            publisher.start()
            self.publisher = publisher
            if p.publisher.preview is not None:
                preview = p.publisher.preview
                self.preview = PreviewEncoder(publisher.offer_message, preview.fps, preview.width, preview.quality)
                self.preview.start()
        if p.recorder.enabled:
            run_dir = self._recording_directory()
            recorder = Recorder(run_dir, self._header(), p.recorder.queue_size, p.recorder.fsync_s,
                                on_error=lambda exc: self._fail("recorder", exc))
            recorder.start()  # refuses a directory that already holds a recording
            self.recorder, self.run_dir = recorder, run_dir
            self.run_log = RunLog(run_dir / RUN_LOG).start()
            log.info("run %s: protocol %s, engine %s on %s, camera %s, daq %s, recording %s", loaded.name,
                     loaded.path, getattr(self.engine, "name", "?"), getattr(self.engine, "device", "?"),
                     p.camera.backend, p.daq.backend if p.daq is not None else "none", run_dir)
        if self.daq is None and p.daq is not None:
            self.daq = make_daq(p.daq)
        if self.daq is not None:
            self.daq.open()  # outputs start at 0 V
        self.outputs = OutputStage(self.program, self.daq, on_event=self._record_event,
                                   on_error=lambda exc: self._fail("output timer", exc))
        if self._stop.is_set() or self._signal or self._requested:
            return
        self.camera.open()
        self.t_camera_open = self.last_arrival = clock.now()
        self._check_frame_size()

    def _check_frame_size(self) -> None:
        h, w = self.camera.frame_shape
        check_frame_size(h, w, self.loaded.spec, f"camera {self.protocol.camera.backend}")

    def _recording_directory(self) -> Path:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        template = self.protocol.recorder.path
        path = Path(template.format(name=self.loaded.name, time=stamp)).expanduser()
        if "{time}" in template:
            base, n = path, 2
            while path.exists():  # two runs in one second
                path, n = base.with_name(f"{base.name}-{n}"), n + 1
        return path

    def _header(self) -> dict[str, Any]:
        spec, p = self.loaded.spec, self.protocol
        camera = {"backend": p.camera.backend, "name": getattr(self.camera, "name", "")}
        return {
            "rtpose_version": __version__,
            "protocol_path": str(self.loaded.path),
            "protocol_name": self.loaded.name,
            "protocol": p.model_dump(mode="json", by_alias=True),
            "protocol_text": _read_text(self.loaded.path),
            "node_names": list(spec.node_names),
            "class_names": list(spec.class_names),
            "edges": [list(e) for e in spec.edges],
            "px_per_mm": p.arena.px_per_mm,
            "model": str(self.loaded.export_dir),
            "engine": getattr(self.engine, "name", ""),
            "engine_device": getattr(self.engine, "device", ""),
            "engine_graph": getattr(self.engine, "graph", ""),
            "camera": camera,
            "video": str(p.camera.path) if p.camera.backend == "replay" else None,
            "channels": dict(self.program.channels),
            "started_at": self.t_started_wall,
            "t_start": clock.now(),
        }

    def _start_threads(self) -> None:
        for target, name in ((self._process, "rtpose-inference"), (self._acquire, "rtpose-camera")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    # -- the threads ---------------------------------------------------------------------

    def _acquire(self) -> None:
        camera, slot = self.camera, self.slot
        stall_s = self.protocol.safety.camera_stall_s
        last_seq = -1
        try:
            while not self._stop.is_set():
                try:
                    frame = camera.read(timeout_s=stall_s)
                except CameraTimeout as exc:
                    if self._stop.is_set():
                        break
                    raise CameraStalled(f"camera stopped delivering: {exc}") from None
                if frame is None:
                    self._source_ended = not self._stop.is_set()
                    break
                self.last_arrival = frame.t_arrival
                self.received += 1
                gap = frame.seq - last_seq - 1
                if gap > 0:
                    self._dropped(DropRecord("camera", seq=last_seq + 1, count=gap))
                last_seq = frame.seq
                dropped = slot.put(frame)
                if dropped is not None:
                    self._dropped(DropRecord("shutdown" if dropped is frame else "replaced", seq=dropped.seq,
                                             frame=dropped.index, arrival=dropped.t_arrival))
        except BaseException as exc:
            self._fail("camera", exc)
        finally:
            slot.close()  # the last frame can still be taken; then the inference thread ends
            self._wake.set()

    def _process(self) -> None:
        engine, slot, outputs = self.engine, self.slot, self.outputs
        publisher, recorder, preview = self.publisher, self.recorder, self.preview
        follow = self.continuity
        last_seq = -1
        try:
            while not self._stop.is_set():
                ready = clock.now()
                frame = slot.take(0.1)
                if frame is None:
                    if slot.closed and len(slot) == 0:
                        break
                    continue
                if self._stop.is_set():
                    self._dropped(DropRecord("shutdown", frame.seq, frame=frame.index, arrival=frame.t_arrival))
                    break
                if frame.seq <= last_seq:
                    raise RuntimeError(f"frame seq {frame.seq} came after seq {last_seq}: it would be processed twice")
                last_seq = frame.seq
                try:
                    image = frame.image  # a replayed frame is decoded here, on first use
                except FrameLost:  # its pixels do not exist: a replay past its stream's end, or undecodable
                    self._dropped(DropRecord("lost", frame.seq, frame=frame.index, arrival=frame.t_arrival))
                    continue
                except CameraClosed:
                    if not self._stop.is_set():
                        raise
                    # The shutdown closed the camera between this thread's take and the decode.
                    self._dropped(DropRecord("shutdown", frame.seq, frame=frame.index, arrival=frame.t_arrival))
                    break
                try:
                    infer_start = self.inferring_since = clock.now()
                    poses = engine.infer(image)
                    if follow is not None:
                        poses = follow(poses, frame.index)
                    infer_end = clock.now()
                    self.inferring_since = None
                    decision, t_output, written = outputs.decide(poses, frame.t_exposure)
                except OutputsClosed:
                    self._dropped(DropRecord("shutdown", frame.seq, frame=frame.index, arrival=frame.t_arrival))
                    break
                except BaseException:
                    self.inferring_since = None
                    self._dropped(DropRecord("error", frame.seq, frame=frame.index, arrival=frame.t_arrival))
                    raise
                record = FrameRecord(frame.index, frame.seq, frame.t_exposure, frame.t_arrival, ready, infer_start,
                                     infer_end, decision.t, t_output, poses, decision.features, decision.rules,
                                     decision.volts, written)
                if publisher is not None:
                    publisher.offer(record)
                if recorder is not None:
                    recorder.offer(record)
                if preview is not None:
                    preview.offer(frame.index, frame.t_exposure, image)
                self.processed += 1
                self._account(record)
        except BaseException as exc:
            self._fail("inference", exc)
        finally:
            self._processing_done.set()
            self._wake.set()

    def _account(self, record: FrameRecord) -> None:
        latency = self.latency
        latency["inference"].add(record.inference_s)
        latency["overhead"].add(record.overhead_s)
        latency["slot_wait"].add(record.slot_wait_s)
        latency["arrival_to_output"].add(record.output - record.arrival)
        latency["exposure_to_output"].add(record.output - record.exposure)
        for name, state in record.rules.items():
            if state:
                self.rule_true_frames[name] += 1

    def _dropped(self, drop: DropRecord) -> None:
        with self._state_lock:
            self.drops[drop.reason] += drop.count
        if self.recorder is not None:
            self.recorder.offer(drop)

    def _record_event(self, event: OutputEvent) -> None:
        if self.recorder is not None:
            self.recorder.offer(event)

    # -- stopping ------------------------------------------------------------------------

    def _fail(self, where: str, exc: BaseException) -> None:
        """The first failure of any thread stops the run; the outputs go to 0 V right here."""
        with self._state_lock:
            first = self._error is None
            if first:
                self._error = (where, exc)
                self._setup_error = self._opening and isinstance(exc, RtposeError)
        if isinstance(exc, KeyboardInterrupt):
            log.info("interrupted (%s)", where)
        else:  # the whole traceback, with its causes, goes to run.log; the terminal shows one line
            log.error("%s failed%s", where, "" if first else " (after an earlier failure)", exc_info=exc)
        self._stop.set()
        self._wake.set()
        if first and self.outputs is not None:
            try:
                self.outputs.close()
            except BaseException as zero_exc:  # the supervisor's shutdown tries again
                self.shutdown_problems.append(f"zeroing after the {where} failure: {zero_exc}")
                log.error("zeroing after the %s failure failed", where, exc_info=zero_exc)

    def _install_signal_handlers(self) -> dict:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame) -> None:
        # Only a flag: the supervisor sees it within its polling interval and does the rest.
        if self._signal is None:
            self._signal = signal.Signals(signum).name

    def _supervise(self) -> None:
        duration = self.protocol.duration
        stall_s = self.protocol.safety.camera_stall_s
        inference_stall_s = self.protocol.safety.inference_stall_s
        t_end = self.t_camera_open + duration if duration is not None else None
        next_status = 0.0
        while True:
            if self._signal is not None:
                self._stop_reason = self._signal
                return
            if self._requested is not None:
                self._stop_reason = self._requested
                return
            if self._error is not None:
                return
            if self._processing_done.is_set():
                self._stop_reason = "source ended" if self._source_ended else "inference stopped"
                return
            now = clock.now()
            if t_end is not None and now >= t_end:
                self._stop_reason = "duration"
                return
            if now >= next_status:
                self._report_status()
                next_status = now + STATUS_PERIOD_S
            silent = now - self.last_arrival
            if silent > stall_s + 0.25:  # the camera thread's read timeout normally reports first
                self._fail("camera watchdog", CameraStalled(
                    f"camera stopped delivering: no frame for {silent:.1f} s (safety.camera_stall_s = {stall_s:g})"))
                return
            busy_since = self.inferring_since
            if busy_since is not None and now - busy_since > inference_stall_s:
                self._fail("inference watchdog", InferenceStalled(
                    f"the engine has been running one frame for {now - busy_since:.1f} s "
                    f"(safety.inference_stall_s = {inference_stall_s:g})"))
                return
            wait = 0.05 if t_end is None else min(0.05, t_end - now)
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()

    def _shutdown(self) -> None:
        """The one way out. 0 V first, then threads, devices, publisher, and the recording last."""
        self._stop.set()
        self.slot.close()
        self.t_stop = clock.now()
        self._attempt("write 0 V", self._zero_outputs)
        if self.camera is not None:  # even one passed in: closing is what ends a blocked read
            self._attempt("close the camera", self.camera.close)
        for thread in self._threads:
            thread.join(timeout=5.0)
            if thread.is_alive():
                self.shutdown_problems.append(f"thread {thread.name} did not stop within 5 s")
                log.warning("thread %s did not stop within 5 s", thread.name)
        leftover = self.slot.drain()
        if leftover is not None:
            self._dropped(DropRecord("shutdown", leftover.seq, frame=leftover.index, arrival=leftover.t_arrival))
        if self.daq is not None:
            if self.capture_ai:
                self._attempt("read the analog input", self._capture_ai)
            if self._owns_daq:
                self._attempt("close the DAQ", self.daq.close)  # zeroes again before letting go
            self.final_volts = self.daq.ao_values()
        if self.preview is not None:
            self._attempt("stop the preview encoder", self.preview.close)
        if self.publisher is not None:
            self._attempt("publish the last status", lambda: self._publish_status(running=False))
            self._attempt("close the publisher", self.publisher.close)
        if self.engine is not None and self._owns_engine:
            self._attempt("close the engine", self.engine.close)
        if self.recorder is not None:
            self._attempt("close the recording", lambda: self.recorder.close(self._end_record()))
            if self.protocol.recorder.export_slp and self.run_dir is not None and self.processed:
                from rtpose.live.recorder import export_slp

                self._attempt("export predictions.slp", lambda: export_slp(self.run_dir, self.run_dir / "predictions.slp"))

    def _report_status(self) -> None:
        """The running ``status`` map to the publisher and to ``on_status``, made once."""
        if self.publisher is None and self.on_status is None:
            return
        message = status_message(self, running=True)
        if self.publisher is not None:
            self.publisher.offer_message(STATUS_TOPIC, message)
        if self.on_status is not None:
            try:
                self.on_status(message)
            except Exception:  # a display must never stop an experiment
                log.exception("on_status failed; no more status calls this run")
                self.on_status = None

    def _publish_status(self, running: bool) -> None:
        if self.publisher is not None:
            self.publisher.offer_message(STATUS_TOPIC, status_message(self, running))

    def _zero_outputs(self) -> None:
        if self.outputs is not None:
            self.outputs.close()
        elif self.daq is not None and self.daq.is_open:
            self.daq.zero_all()
        self.t_zeroed = clock.now()

    def _capture_ai(self) -> None:
        if not self.daq.ai_channels or self.t_camera_open is None:
            return
        first, _ = self.daq.ai_time_span()
        self.ai_trace = self.daq.read_ai(max(first, self.t_camera_open - 0.5), clock.now())

    def _attempt(self, what: str, action) -> None:
        try:
            action()
        except BaseException as exc:
            self.shutdown_problems.append(f"{what}: {type(exc).__name__}: {exc}")
            log.warning("shutdown: %s failed", what, exc_info=exc)
            if what == "write 0 V" and self.daq is not None:
                try:  # one more go, straight at the DAQ
                    self.daq.zero_all()
                except BaseException as again:
                    self.shutdown_problems.append(f"write 0 V (again): {again}")
                    log.error("shutdown: write 0 V failed again", exc_info=again)

    # -- the outcome ---------------------------------------------------------------------

    def _trigger_count(self) -> dict[str, int]:
        return {o.name: int(o.pulse_count) for o in self.program.outputs if hasattr(o, "pulse_count")}

    def error_message(self) -> str | None:
        if self._error is None:
            return None
        where, exc = self._error
        if isinstance(exc, KeyboardInterrupt):
            return None
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, RtposeError):
            return text
        return f"{where} thread: {type(exc).__name__}: {text}"

    def stop_reason(self) -> str:
        if self._error is not None:
            exc = self._error[1]
            if isinstance(exc, KeyboardInterrupt):
                return "SIGINT"
            if isinstance(exc, CameraStalled):
                return "camera stalled"
            return "inference stalled" if isinstance(exc, InferenceStalled) else "error"
        return self._stop_reason or "stopped"

    def _end_record(self) -> dict[str, Any]:
        return {"t": clock.now(), "reason": self.stop_reason(), "error": self.error_message(),
                "frames": self.frame_counts(), "final_volts": dict(self.final_volts),
                "t_zeroed": self.t_zeroed, "camera": {"name": getattr(self.camera, "name", ""),
                                                      "fps": safe_value("the camera's frame rate",
                                                                   lambda: self.camera.frame_rate),
                                                      "note": getattr(self.camera, "stream_note", None)}}

    def frame_counts(self) -> dict[str, Any]:
        dropped = sum(self.drops.values())
        return {"acquired": self.received + self.drops["camera"], "processed": self.processed,
                "dropped": dropped, "dropped_by_reason": dict(self.drops)}

    def _result(self) -> RunResult:
        summary = build_summary(self)
        if self.run_dir is not None and self.run_dir.exists():
            _write_json(self.run_dir / "summary.json", summary)
        return RunResult(summary=summary, stop_reason=self.stop_reason(), error=self.error_message(),
                         recording=self.run_dir, final_volts=dict(self.final_volts), ai_trace=self.ai_trace,
                         setup_error=self._setup_error and self.error_message() is not None)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(jsonsafe.dumps(data, indent=2) + "\n")
