"""The run summary: the figures an experimenter checks before trusting a session.

``build_summary`` gives a JSON-ready map (written beside the recording and by
``rtpose run --summary``); ``print_summary`` shows it as a short table. Keys that other
tools rely on: ``frames.acquired``, ``frames.processed``, ``frames.dropped``,
``triggers``, ``latency_ms.inference.{p50,p99}``, ``latency_ms.overhead.{p50,p99}``,
``outputs_final_volts``; ``camera.note`` says when a replayed stream held fewer frames
than its container declared (null otherwise).

``latency_ms.overhead`` is the loop's own cost per processed frame: from the frame's
arrival (or from the moment the loop was free, if the frame had to wait for the
previous one) to the DAQ write, minus inference. The wait behind a busy engine is
``latency_ms.slot_wait``; the whole arrival -> output time, wait included, is
``latency_ms.arrival_to_output``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from rtpose import __version__

if TYPE_CHECKING:
    from rtpose.live.daemon import Daemon

T = TypeVar("T")
log = logging.getLogger(__name__)


def build_summary(daemon: "Daemon") -> dict[str, Any]:
    loaded, protocol = daemon.loaded, daemon.protocol
    frames = daemon.frame_counts()
    wall_s = None
    if daemon.t_camera_open is not None and daemon.t_stop is not None:
        wall_s = round(daemon.t_stop - daemon.t_camera_open, 3)
    frames["processed_fps"] = round(daemon.processed / wall_s, 2) if wall_s else None
    camera = daemon.camera
    triggers = daemon._trigger_count()
    outputs = daemon.outputs
    pulses = {}
    if outputs is not None:
        for name, widths in outputs.pulse_widths.items():
            pulses[name] = {"count": triggers.get(name, 0), "width_ms": widths.summary_ms()}
    latency = {name: histogram.summary_ms() for name, histogram in daemon.latency.items()}
    frames["why_dropped"] = why_dropped(frames, latency, safe_value("the camera's frame rate",
                                                                    lambda: camera.frame_rate), wall_s)
    return {
        "rtpose_version": __version__,
        "protocol": str(loaded.path),
        "name": loaded.name,
        "started_at": daemon.t_started_wall,
        "wall_s": wall_s,
        "stop": {"reason": daemon.stop_reason(), "error": daemon.error_message(),
                 "problems_during_shutdown": list(daemon.shutdown_problems)},
        "model": {"export_dir": str(loaded.export_dir), "engine": protocol.model.engine,
                  "device": getattr(daemon.engine, "device", None), "graph": getattr(daemon.engine, "graph", None),
                  "graph_reason": getattr(daemon.engine, "graph_reason", "").strip() or None},
        "camera": {"name": getattr(camera, "name", None), "fps": safe_value("the camera's frame rate", lambda: camera.frame_rate),
                   "frame_shape": safe_value("the camera's frame shape", lambda: list(camera.frame_shape)),
                   "note": getattr(camera, "stream_note", None)},
        "daq": getattr(daemon.daq, "name", None),
        "frames": frames,
        "triggers": sum(triggers.values()),
        "triggers_by_output": triggers,
        "rule_true_frames": dict(daemon.rule_true_frames),
        "identity_followed_frames": daemon.identity_followed_frames,
        "latency_ms": latency,
        "pulses": pulses,
        "pulse_off_edge_late_ms": outputs.off_edge_late.summary_ms() if outputs is not None else None,
        "daq_writes": outputs.writes if outputs is not None else 0,
        "outputs_final_volts": dict(daemon.final_volts),
        "publisher": daemon.publisher.stats() if daemon.publisher is not None else None,
        "preview": daemon.preview.stats() if daemon.preview is not None else None,
        "recorder": daemon.recorder.stats() if daemon.recorder is not None else None,
        "recording": str(daemon.run_dir) if daemon.run_dir is not None else None,
    }


def why_dropped(frames: dict[str, Any], latency: dict[str, dict], fps: float | None,
                wall_s: float | None) -> str | None:
    """One sentence on why frames were replaced in the one-slot FrameSlot, or None.

    A frame is replaced when a newer one arrives before the loop took it. Either the loop
    sat idle most of the run while frames still piled up (they reached it late: a process
    short of CPU, a slow decoder; exposure -> output against arrival -> output says by how
    much), or the loop took longer a frame on average (run time / frames processed) than
    the frame interval ``1000 / fps``, or it kept up on average and slow frames (the
    inference p99) let the next one be replaced.

    Args:
        frames: ``frame_counts()`` (``processed``, ``dropped_by_reason``).
        latency: ``latency_ms`` by stage (``inference``, ``overhead``, ``exposure_to_output``,
            ``arrival_to_output``), each with ``p50``, ``p99``, ``mean`` in ms.
        fps: the camera's frame rate; wall_s: camera open -> stop.
    """
    replaced = frames.get("dropped_by_reason", {}).get("replaced", 0)
    inference, overhead = latency.get("inference", {}), latency.get("overhead", {})
    if not replaced or not fps or not wall_s or inference.get("p50") is None:
        return None
    interval = 1000.0 / fps
    per_frame = inference["p50"] + (overhead.get("p50") or 0.0)
    busy = frames.get("processed", 0) * (inference.get("mean") or inference["p50"]) / (wall_s * 1000.0)
    if busy < 0.5:
        exposure, arrival = latency.get("exposure_to_output", {}), latency.get("arrival_to_output", {})
        late = ""
        if exposure.get("p50") is not None and arrival.get("p50") is not None:
            late = f" (exposure -> output p50 {exposure['p50']:.0f} ms, arrival -> output {arrival['p50']:.0f} ms)"
        return (f"the loop was busy only {busy:.0%} of the run (inference p50 {inference['p50']:.1f} ms, "
                f"{interval:.1f} ms between frames): frames reached it late and in bunches{late}; the process "
                "was short of CPU (other work on the machine?) or the camera's frames came late")
    cycle = wall_s * 1000.0 / max(frames.get("processed", 0), 1)  # what the loop took a frame, on average
    if cycle > interval:
        return (f"the loop took {cycle:.1f} ms a frame on average (inference p50 {inference['p50']:.1f} ms, p99 "
                f"{_num(inference.get('p99'))} ms; inference and the loop's own work {per_frame:.1f} ms p50) and "
                f"frames come every {interval:.1f} ms at {fps:g} FPS: the newest frame wins; a faster graph or a "
                "lower camera.fps keeps every frame")
    return (f"the loop keeps up on average ({cycle:.1f} ms a frame against {interval:.1f} ms between frames), "
            f"but slow frames (inference p99 {_num(inference.get('p99'))} ms) let the next one be replaced")


def safe_value(what: str, getter: Callable[[], T]) -> T | None:
    """``getter()``, or ``None`` for a figure a summary can do without (a camera that never opened).

    The exception is not lost: it goes to the ``rtpose`` log (``run.log``) with its traceback.
    """
    try:
        return getter()
    except Exception:
        log.warning("could not read %s", what, exc_info=True)
        return None


def print_summary(summary: dict[str, Any], console=None) -> None:
    """A readable table of the figures that matter (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    frames, latency = summary["frames"], summary["latency_ms"]
    table = Table(title=f"rtpose run: {summary['name']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    stop = summary["stop"]
    table.add_row("stopped", stop["reason"] + (f" ({stop['error']})" if stop["error"] else ""))
    table.add_row("ran", f"{summary['wall_s']} s" if summary["wall_s"] is not None else "-")
    table.add_row("model", f"{summary['model']['export_dir']} on {summary['model']['engine']} "
                           f"({summary['model']['device']})")
    if summary["model"].get("graph"):
        table.add_row("graph", summary["model"]["graph"] + (f" ({summary['model']['graph_reason']})"
                                                            if summary["model"].get("graph_reason") else ""))
    cam = summary["camera"]
    table.add_row("camera", f"{cam['name']} at {_num(cam['fps'])} FPS"
                            + (f"; the source ended early: {cam['note']}" if cam.get("note") else ""))
    by_reason = ", ".join(f"{k} {v}" for k, v in frames["dropped_by_reason"].items() if v) or "none"
    table.add_row("frames", f"{frames['acquired']} acquired = {frames['processed']} processed "
                            f"({_num(frames['processed_fps'])}/s) + {frames['dropped']} dropped ({by_reason})")
    if frames.get("why_dropped"):
        table.add_row("why dropped", frames["why_dropped"])
    for name, label in (("inference", "inference"), ("overhead", "overhead (loop)"),
                        ("exposure_to_output", "exposure -> output")):
        figures = latency[name]
        table.add_row(label, f"p50 {_num(figures['p50'])} ms, p99 {_num(figures['p99'])} ms, "
                             f"max {_num(figures['max'])} ms")
    triggers = ", ".join(f"{k} {v}" for k, v in summary["triggers_by_output"].items()) or "no outputs"
    table.add_row("triggers", f"{summary['triggers']} ({triggers})")
    for name, count in summary["rule_true_frames"].items():
        table.add_row(f"rule {name}", f"true on {count} frames")
    if summary.get("identity_followed_frames"):
        table.add_row("identities", f"followed by position on {summary['identity_followed_frames']} frames "
                                    "(the identity head was not decisive)")
    for name, pulse in summary["pulses"].items():
        width = pulse["width_ms"]
        if width["count"]:
            table.add_row(f"pulse {name}", f"width p50 {_num(width['p50'])} ms, max {_num(width['max'])} ms")
    volts = ", ".join(f"{k} {v:g} V" for k, v in summary["outputs_final_volts"].items()) or "no DAQ"
    table.add_row("DAQ channels after stop", volts)  # every analog output, driven or not
    if summary["publisher"]:
        pub = summary["publisher"]
        table.add_row("published", f"{pub['sent']} messages on {pub['address']}"
                                   + (f" ({pub['queue_overflow']} lost: queue full)" if pub["queue_overflow"] else ""))
    if summary.get("preview"):
        pre = summary["preview"]
        table.add_row("preview", f"{pre['encoded']} JPEG frames ({pre['width']} px, quality {pre['quality']}, "
                                 f"at most {_num(pre['fps'])}/s; encoding took up to {_num(pre['max_encode_ms'])} ms)"
                                 + (f"; stopped: {pre['error']}" if pre["error"] else ""))
    if summary["recording"]:
        table.add_row("recording", summary["recording"])
    for problem in stop["problems_during_shutdown"]:
        table.add_row("[red]shutdown problem[/red]", problem)
    console.print(table)


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
