"""The calibration's outputs: a JSON report, a histogram PNG beside it, a breakdown in words.

Report keys other tools may rely on: ``system_latency_ms.{mean,sd,p50,p95}``,
``software_latency_ms.{mean,p99}``, ``daq_latency_ms.mean`` (per segment) and
``daq_latency_ms.per_change.mean`` (change by change), ``segments.{used,rejected}``
(counts; ``segments.list`` has one entry per segment with its latency or why it was
left out), ``breakdown_ms``, ``injected`` (the simulated cable, null on real hardware),
``status`` (``ok`` or ``too few segments``: then ``system_latency_ms`` holds nulls, as
fewer segments than ``min_segments`` give no latency).
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rtpose import __version__
from rtpose.calibrate.analysis import Calibration, describe_ms, expected_sim_delay_ms
from rtpose.errors import RtposeError
from rtpose.live.protocol import LoadedProtocol
from rtpose.machine import describe
from rtpose.paths import claim_report_file, make_parent
from rtpose import jsonsafe

FORMAT = "rtpose-latency-calibration"
VERSION = 1
# SLEAP (Pereira et al., Nature Methods 2022): closed-loop round trip on their rig, and
# the model's own share (the 1024x1024 top-down ID model on their GPU).
PAPER = {"system_latency_ms": {"mean": 71.0, "sd": 17.0}, "model_latency_ms": 3.45}
# The breakdown's DAQ + wiring comes from the changes timed one by one when there are this many and their
# mean's standard error is the smaller; from the segments otherwise (e.g. most changes too close together).
MIN_CHANGES = 10

STAGE_TEXT = {
    "camera": "exposure -> frame in rtpose: sensor readout, transfer and driver{camera_note}",
    "waiting": "frame in rtpose -> engine starts on it: waiting for the previous frame's inference and the hand-over",
    "inference": "the model on this frame ({engine})",
    "output": "features, rules and the DAQ write call",
    "daq_and_wiring": "DAQ write returned -> value on the analog input: output update, cable, input sampling{daq_note}",
}


def build_report(calibration: Calibration, loaded: LoadedProtocol, summary: dict[str, Any] | None = None,
                 overrides: list[str] | None = None, recording: str | Path | None = None) -> dict[str, Any]:
    """Everything the calibration found, JSON-ready (None where a figure is undefined)."""
    protocol, target = loaded.protocol, calibration.target
    summary = summary or {}
    traces = calibration.traces
    # fewer usable segments than min_segments: no system latency is reported (null in the JSON, not
    # printed); the segments stay in the list and the histogram, to see why
    system = describe_ms(calibration.system_s() if calibration.enough_segments else [])
    software = describe_ms(traces.software_s, (50, 95, 99))
    software["aligned_mean"] = describe_ms(calibration.software_aligned_s())["mean"]
    daq = describe_ms(calibration.daq_s())
    daq["per_change"] = _per_change(calibration)
    hardware = daq["per_change"] if _more_precise(daq["per_change"], daq) else daq
    stages = {name: describe_ms(values, (50, 99)) for name, values in calibration.stages_s.items()}
    stages["daq_and_wiring"] = {key: hardware[key] for key in ("mean", "sd", "sem", "p50", "p95", "n")}
    stages["daq_and_wiring"]["from"] = "changes" if hardware is not daq else "segments"
    report: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "rtpose_version": __version__,
        "created_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "status": "ok" if calibration.enough_segments else "too few segments",
        "message": None if calibration.enough_segments else calibration.shortfall_message(),
        "system_latency_ms": system,
        "software_latency_ms": software,
        "daq_latency_ms": daq,
        "breakdown_ms": stages,
        "segments": {
            "used": len(calibration.used),
            "rejected": len(calibration.rejected),
            "total": len(calibration.segments),
            "rejected_by_reason": calibration.rejected_by_reason(),
            "list": [_segment(s, traces.usable_from - calibration.settings.max_lag_ms / 1000.0)
                     for s in calibration.segments],
        },
        "injected": _injected(protocol, hardware["mean"], daq["mean"]),
        "paper": PAPER,
        "settings": calibration.settings.as_dict(),
        "protocol": {
            "path": str(loaded.path),
            "name": loaded.name,
            "overrides": list(overrides or []),
            "camera": {"backend": protocol.camera.backend, "name": (summary.get("camera") or {}).get("name"),
                       "fps": (summary.get("camera") or {}).get("fps")},
            "model": {"export_dir": str(loaded.export_dir), "engine": protocol.model.engine,
                      "device": (summary.get("model") or {}).get("device")},
            "daq": {"backend": protocol.daq.backend, "device_file": protocol.daq.device_file,
                    "ai_rate_hz": target.ai_rate_hz},
            "output": target.output,
            "channel": target.channel,
            "loopback_input": target.loopback_input,
            "feature": target.feature,
            "follow": {"from": list(target.follow.feature_range), "to": list(target.follow.volts_range)},
        },
        "run": {
            "stop_reason": (summary.get("stop") or {}).get("reason"),
            "wall_s": summary.get("wall_s"),
            "frames": {k: (summary.get("frames") or {}).get(k) for k in ("acquired", "processed", "dropped")},
            "recording": str(recording) if recording is not None else None,
            "ai_samples": int(len(traces.t)),
            "offline_agreement": _finite(calibration.offline_agreement),
        },
        "machine": machine_info(),
        "histogram": None,
    }
    return report


def _segment(segment, t_origin: float) -> dict[str, Any]:
    a = segment.alignment

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None or not math.isfinite(seconds) else round(seconds * 1000.0, 4)

    return {
        "index": segment.index,
        "start_s": round(segment.start - t_origin, 4),  # from the first processed frame's exposure
        "latency_ms": ms(a.latency_s) if a.used else None,
        "software_ms": ms(segment.software_s),
        "software_aligned_ms": ms(segment.software_alignment.latency_s) if segment.software_alignment else None,
        "daq_ms": ms(segment.daq_s),
        "correlation": _finite(a.correlation, 5),
        "swing_volts": _finite(a.swing_volts, 5),
        "frames": segment.frames,
        "rejected": a.rejected,
        "detail": a.detail or None,
    }


def _more_precise(per_change: dict[str, Any], per_segment: dict[str, Any]) -> bool:
    """Whether the changes timed one by one pin the hardware delay down better than the segments do."""
    if per_change["n"] < MIN_CHANGES or per_change["sem"] is None:
        return False
    return per_segment["sem"] is None or per_change["sem"] <= per_segment["sem"]


def _per_change(calibration: Calibration) -> dict[str, Any]:
    """The output's changes timed one by one on the input (``rtpose.calibrate.edges``)."""
    timing = calibration.changes
    if timing is None:
        return {**describe_ms([]), "changes": 0}
    return {**describe_ms(timing.delays_s), "changes": timing.changes,
            "left_out": {"too small for the noise": timing.too_small, "neighbour in window": timing.crowded,
                         "outside window": timing.outside_window},
            "half_window_ms": round(timing.half_window_s * 1000.0, 3),
            "input_noise_volts": _finite(timing.noise_volts), "input_gain": _finite(timing.gain),
            "input_offset_volts": _finite(timing.offset_volts)}


def _injected(protocol, recovered_ms: float | None, by_segments_ms: float | None) -> dict[str, Any] | None:
    daq = protocol.daq
    if daq.backend != "sim":
        return None
    expected = expected_sim_delay_ms(daq.loopback_delay_ms, daq.loopback_jitter_ms)
    return {
        "loopback_delay_ms": daq.loopback_delay_ms,
        "loopback_jitter_ms": daq.loopback_jitter_ms,
        "noise_volts": daq.noise_volts,
        "seed": daq.seed,
        "expected_daq_latency_ms": round(expected, 4),  # mean of max(0, D + J N(0,1))
        "recovered_daq_latency_ms": recovered_ms,  # breakdown_ms.daq_and_wiring.mean
        "error_ms": None if recovered_ms is None else round(recovered_ms - expected, 4),
        "recovered_by_segments_ms": by_segments_ms,  # daq_latency_ms.mean
    }


def _finite(value: float, digits: int = 6) -> float | None:
    return round(float(value), digits) if value is not None and math.isfinite(value) else None


def machine_info() -> dict[str, Any]:
    return describe()


# --- files ------------------------------------------------------------------------------


def claim_report(path: str | Path, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Path:
    """Check ``--report PATH`` before the calibration's run: the JSON and the histogram PNG
    beside it (``path.with_suffix(".png")``) are both refused when they exist, unless
    ``overwrite`` (:func:`rtpose.paths.claim_report_file`), so a short failing calibration
    never replaces an earlier report or its PNG.

    Raises:
        RtposeError: one line naming the file; also when ``path`` ends in ``.png`` (the
            histogram would be the report itself).
    """
    path = claim_report_file(path, overwrite, "--report", inputs)
    png = path.with_suffix(".png")
    if png == path:
        raise RtposeError(f"--report {path}: the histogram PNG goes beside the report with the same name: "
                          "give a .json name")
    claim_report_file(png, overwrite, "--report", inputs)
    return path


def write_report(report: dict[str, Any], calibration: Calibration, path: str | Path) -> tuple[Path, Path]:
    """The JSON at ``path`` and the histogram PNG beside it (same stem); missing parent
    folders are created. Whether they may be replaced is :func:`claim_report`'s to say,
    before the run."""
    path = make_parent(Path(path))
    png = path.with_suffix(".png")
    write_histogram(calibration, report, png)
    report["histogram"] = str(png)
    path.write_text(jsonsafe.dumps(report, indent=2) + "\n")
    return path, png


def write_histogram(calibration: Calibration, report: dict[str, Any], path: Path) -> None:
    """Per-segment system latencies over the per-frame software latencies, on one ms axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    system = calibration.system_s() * 1000.0
    software = calibration.traces.software_s * 1000.0
    software = software[np.isfinite(software)]
    every = np.concatenate([system, software])
    low, high = (float(np.min(every)), float(np.max(every))) if len(every) else (0.0, 1.0)
    bins = np.linspace(math.floor(low) - 1, math.ceil(high) + 1, 60)
    sys_figures, sw_figures = report["system_latency_ms"], report["software_latency_ms"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, constrained_layout=True)
    if len(system):
        top.hist(system, bins=bins, color="tab:blue", edgecolor="white",
                 label="segments" if sys_figures["mean"] is not None else "segments (too few: no latency reported)")
    if sys_figures["mean"] is not None:
        top.axvline(sys_figures["mean"], color="tab:blue", linestyle="--",
                    label=f"system mean {sys_figures['mean']:.1f} ms")
    if sw_figures["aligned_mean"] is not None:
        top.axvline(sw_figures["aligned_mean"], color="tab:orange", linestyle="--",
                    label=f"software, weighted as the segments: {sw_figures['aligned_mean']:.1f} ms")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_ylabel("segments")
    sd = f" +- {sys_figures['sd']:.1f}" if sys_figures["sd"] is not None else ""
    mean = f"{sys_figures['mean']:.1f}" if sys_figures["mean"] is not None else "-"
    top.set_title(f"{report['protocol']['name']}: exposure -> analog input, {mean}{sd} ms "
                  f"({len(system)} segments of {report['segments']['total']})", fontsize=10)
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=8)
    top.tick_params(labelbottom=True)
    bottom.hist(software, bins=bins, color="tab:orange", edgecolor="white")
    if sw_figures["mean"] is not None:
        bottom.axvline(sw_figures["mean"], color="tab:orange", linestyle=":",
                       label=f"mean {sw_figures['mean']:.1f} ms, p99 {sw_figures['p99']:.1f} ms")
        bottom.legend(fontsize=8)
    bottom.set_ylabel("frames")
    bottom.set_xlabel("latency from exposure (ms)")
    bottom.set_title("software: exposure -> DAQ write returned, per processed frame", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- words ------------------------------------------------------------------------------


def breakdown_lines(report: dict[str, Any]) -> list[str]:
    """The report in plain sentences, one per line (what ``rtpose calibrate`` prints)."""
    system, software, daq = report["system_latency_ms"], report["software_latency_ms"], report["daq_latency_ms"]
    stages, segments = report["breakdown_ms"], report["segments"]
    proto = report["protocol"]
    injected = report["injected"]
    lines = [f"Latency calibration of {proto['name']}: output '{proto['output']}' ({proto['channel']}) follows "
             f"{proto['feature']}, read back on {proto['loopback_input']} at {proto['daq']['ai_rate_hz']:g} Hz."]
    reasons = ", ".join(f"{n} {r}" for r, n in segments["rejected_by_reason"].items())
    lines.append(f"Segments: {segments['used']} of {segments['total']} used"
                 + (f", {segments['rejected']} left out ({reasons})." if segments["rejected"] else "."))
    if system["mean"] is not None:
        sd = f" +- {system['sd']:.1f}" if system["sd"] is not None else ""
        lines.append(f"System latency (exposure -> value back on the analog input): {system['mean']:.1f}{sd} ms "
                     f"(median {system['p50']:.1f}, p95 {system['p95']:.1f}) over {system['n']} segments; "
                     f"the paper's rig: {PAPER['system_latency_ms']['mean']:.1f} +- "
                     f"{PAPER['system_latency_ms']['sd']:.1f} ms.")
    lines.append(f"Software latency (exposure -> DAQ write, daemon timestamps): mean {_f(software['mean'])} ms, "
                 f"p99 {_f(software['p99'])} ms over {software['n']} frames. Of it, per frame on average:")
    camera_note = " (a replayed video hands each frame over at its exposure time)" \
        if proto["camera"]["backend"] == "replay" else ""
    daq_note = (f" (simulated: {injected['loopback_delay_ms']:g} ms +- {injected['loopback_jitter_ms']:g} ms "
                f"injected, {injected['expected_daq_latency_ms']:.2f} ms expected on average)") if injected else ""
    engine = f"{proto['model']['engine']}" + (f" on {proto['model']['device']}" if proto["model"]["device"] else "")
    notes = {"camera_note": camera_note, "daq_note": daq_note, "engine": engine}
    for name in ("camera", "waiting", "inference", "output"):
        figures = stages[name]
        lines.append(f"  {name:<16} {_f(figures['mean']):>7} ms  (p99 {_f(figures['p99'])})  "
                     + STAGE_TEXT[name].format(**notes))
    figures = stages["daq_and_wiring"]
    how = (f"each of {figures['n']} changes of the output timed where it reappears"
           if figures["from"] == "changes" else f"system minus software over {figures['n']} segments")
    lines.append(f"  {'DAQ + wiring':<16} {_f(figures['mean']):>7} ms  (standard error {_f(figures['sem'])})  "
                 + STAGE_TEXT["daq_and_wiring"].format(**notes) + f"; {how}.")
    if system["mean"] is not None and software["aligned_mean"] is not None:
        lines.append(f"Each segment's latency averages its frames weighted by how much the feature changed at each; "
                     f"weighted that way the software latency is {software['aligned_mean']:.1f} ms "
                     f"(plain mean {software['mean']:.1f} ms), so system {system['mean']:.1f} = software "
                     f"{software['aligned_mean']:.1f} + DAQ {daq['mean']:.1f} ms (DAQ segment by segment, "
                     f"standard error {_f(daq['sem'])} ms).")
        if software["aligned_mean"] - software["mean"] > max(2.0, 0.1 * software["mean"]):
            lines.append("The weighted figure is the higher one: after a slow frame the next processed frame is "
                         "further along (frames were dropped meanwhile), so the feature jumps more there and slow "
                         "moments count more. Fewer drops (a faster engine or a lower frame rate) close the gap.")
    if injected and injected["recovered_daq_latency_ms"] is not None:
        hardware = stages["daq_and_wiring"]
        sem = f", standard error {hardware['sem']:.2f} ms" if hardware["sem"] is not None else ""
        lines.append(f"Injected cable delay: {injected['expected_daq_latency_ms']:.2f} ms expected, "
                     f"{injected['recovered_daq_latency_ms']:.2f} ms recovered (error {injected['error_ms']:+.2f} ms"
                     f"{sem}, from the {hardware['from']}).")
    if report["status"] != "ok":
        message = report["message"]
        lines.append(f"No latency reported: {message}" + ("" if message.endswith((".", "?")) else "."))
    return lines


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
