"""The ``status`` topic: what a live view needs to know about the run besides the poses.

The daemon's supervising thread (never the loop) publishes one map every
``STATUS_PERIOD_S`` and a last one, with ``running: false``, as the run stops (after
the outputs are at 0 V). A view tells runs apart by ``run`` (start time and process
ID), so it can reset its figures when a daemon stops and another starts on the same
address.

Message (msgpack map, topic ``status``)::

    run           str     "<start time ISO 8601> pid <process ID>"
    running       bool    false in the last message of a run
    stop_reason   str | None   as in the run summary (``duration``, ``SIGINT``, ``error``...)
    error         str | None   one line, when the run failed
    t             float   the daemon's monotonic clock (seconds) when the map was made
    elapsed_s     float | None   seconds since the camera opened (None before)
    duration_s    float | None   the protocol's duration (None: until stopped)
    protocol      map     name, path
    model         map     export_dir, engine, device
    camera        map     name, fps, frame_size [h, w]
    skeleton      map     nodes [str], edges [[i, j]], classes [str], identities [str]
    rules         map     name -> expression text
    outputs       map     output name -> DAQ channel
    frames        map     acquired, processed, dropped, dropped_by_reason {reason: n}
    triggers      map     output name -> pulses so far
    latency_ms    map     inference, overhead, exposure_to_output -> {p50, p99, max, count}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rtpose import clock
from rtpose.live.summary import safe_value

if TYPE_CHECKING:
    from rtpose.live.daemon import Daemon

STATUS_PERIOD_S = 0.5
_LATENCIES = ("inference", "overhead", "exposure_to_output")


def status_message(daemon: "Daemon", running: bool) -> dict[str, Any]:
    """The ``status`` map for ``daemon`` now (cheap: counters and three histogram summaries)."""
    loaded, protocol = daemon.loaded, daemon.protocol
    spec, camera = loaded.spec, daemon.camera
    now = clock.now()
    latency = {}
    for name in _LATENCIES:
        figures = daemon.latency[name].summary_ms()
        latency[name] = {key: figures[key] for key in ("p50", "p99", "max", "count")}
    return {
        "run": f"{daemon.t_started_wall} pid {os.getpid()}",
        "running": running,
        "stop_reason": None if running else daemon.stop_reason(),
        "error": None if running else daemon.error_message(),
        "t": now,
        "elapsed_s": None if daemon.t_camera_open is None else now - daemon.t_camera_open,
        "duration_s": protocol.duration,
        "protocol": {"name": loaded.name, "path": str(loaded.path)},
        "model": {"export_dir": str(loaded.export_dir), "engine": protocol.model.engine,
                  "device": str(getattr(daemon.engine, "device", "") or "")},
        "camera": {"name": str(getattr(camera, "name", "") or ""),
                   "fps": safe_value("the camera's frame rate", lambda: float(camera.frame_rate)),
                   "frame_size": safe_value("the camera's frame shape", lambda: [int(v) for v in camera.frame_shape])},
        "skeleton": {"nodes": list(spec.node_names), "edges": [[int(a), int(b)] for a, b in spec.edges],
                     "classes": list(spec.class_names), "identities": list(loaded.identities)},
        "rules": {name: str(text) for name, text in (protocol.rules or {}).items()},
        "outputs": dict(daemon.program.channels),
        "frames": daemon.frame_counts(),
        "triggers": daemon._trigger_count(),
        "latency_ms": latency,
    }

