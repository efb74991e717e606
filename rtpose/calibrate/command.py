"""``rtpose calibrate PROTOCOL.yaml [--duration S] [--set key=value ...] [--report OUT.json [--overwrite]]``.

Checks the protocol (and that it can be calibrated) before anything opens, runs the
daemon with the analog input captured, aligns the looped-back trace with the offline
one, writes the report JSON and its histogram PNG (by default into the run's recording
directory), prints the breakdown, and exits 0; 1 when the run failed or too few
segments were usable (with one line saying why; the report is written all the same); 2 for
a protocol or setting mistake, or a ``--report`` whose JSON or PNG exists without
``--overwrite`` (said before the run: an earlier report is never replaced by a failing one).
``--set calibration.KEY=VALUE`` changes an alignment setting (see ``session``).
"""

from __future__ import annotations

from rtpose.live.memory import limit_malloc_arenas

# First, before numpy, ONNX Runtime and the camera start threads: see rtpose.live.memory.
limit_malloc_arenas(1)

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from rtpose.calibrate.report import breakdown_lines, build_report, claim_report, write_report  # noqa: E402
from rtpose.calibrate.session import prepare, run_and_analyse  # noqa: E402
from rtpose.live.preflight import preflight  # noqa: E402

REPORT_NAME = "latency_report.json"


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    claimed = claim_report(args.report, args.overwrite, [args.protocol]) if args.report else None  # before the run
    loaded, target, settings, protocol_overrides = prepare(args.protocol, args.overrides, args.duration)
    notes = preflight(loaded)  # the replay source and the publisher address: exit 2 before anything opens
    protocol = loaded.protocol
    console = Console(highlight=False, soft_wrap=True)
    duration = f"{protocol.duration:g} s" if protocol.duration is not None else "until Ctrl-C or the end of the video"
    console.print(f"[bold]{loaded.name}[/bold]: calibrating '{target.output}' ({target.channel} -> "
                  f"{target.loopback_input}) on the {protocol.daq.backend} DAQ, {protocol.camera.backend} camera, "
                  f"{duration}")
    for note in notes:  # a replay shorter than the duration: fewer segments than asked for
        console.print(f"note: {note}")
    result, calibration = run_and_analyse(loaded, target, settings)
    if calibration is None:
        if result.exit_code == 2:  # a setup mistake found before acquiring (a driver missing): as rtpose run says it
            print(f"error: {result.error}", file=sys.stderr)
            return 2
        print(f"error: the run failed, nothing to calibrate: {result.error or 'no recording'}", file=sys.stderr)
        return 1
    report = build_report(calibration, loaded, result.summary, protocol_overrides, result.recording)
    path = claimed if claimed is not None else Path(result.recording) / REPORT_NAME
    json_path, png_path = write_report(report, calibration, path)
    for line in breakdown_lines(report):
        console.print(line, markup=False)
    console.print(f"report: {json_path}  histogram: {png_path}", markup=False)
    if result.exit_code in (130, 143):  # Ctrl-C or SIGTERM: a shorter calibration than asked, said so
        wall = result.summary.get("wall_s") or 0.0
        volts = ", ".join(f"{name} {v:g} V" for name, v in result.final_volts.items())
        print(f"interrupted ({result.stop_reason}) after {wall:.1f} s of {duration}: the report covers that time "
              f"only; DAQ channels after stop: {volts}", file=sys.stderr)
        return result.exit_code
    if not calibration.enough_segments:
        print(f"error: {calibration.shortfall_message()}", file=sys.stderr)
        return 1
    return 0
