"""``rtpose run PROTOCOL.yaml [--duration S] [--set key=value ...] [--summary OUT.json [--overwrite]]``.

Validates the whole protocol before anything opens (a mistake is one line naming the
file, the line and the field), then what the text alone cannot tell (the replay source
decodes, the publisher's address is free: ``rtpose.live.preflight``), runs the daemon,
prints the summary, and exits (after 0 V was written in every case):

- 0: the run ended as asked (duration, end of the source);
- 130 / 143: Ctrl-C (SIGINT) / SIGTERM ended it, cleanly (summary, recording);
- 2: a mistake a user can fix, found before acquisition started (protocol, source,
  address in use, a recording directory that exists, a ``--summary`` file that exists
  without ``--overwrite``): one line, nothing recorded;
- 1: something failed during the run (one-line error; run.log has the traceback).
"""

from __future__ import annotations

from rtpose.live.memory import limit_malloc_arenas

# First, before numpy, ONNX Runtime and the camera start threads: see rtpose.live.memory.
limit_malloc_arenas(1)

import argparse  # noqa: E402
import sys  # noqa: E402

from rich.console import Console  # noqa: E402

from rtpose.live.daemon import Daemon  # noqa: E402
from rtpose.live.preflight import preflight  # noqa: E402
from rtpose.live.protocol import load_protocol  # noqa: E402
from rtpose.live.summary import print_summary  # noqa: E402
from rtpose.live.terminal import TerminalStatus  # noqa: E402
from rtpose.paths import claim_report_file, make_parent  # noqa: E402
from rtpose import jsonsafe  # noqa: E402


def main(args: argparse.Namespace) -> int:
    summary = claim_report_file(args.summary, args.overwrite, "--summary", [args.protocol]) if args.summary else None
    loaded = load_protocol(args.protocol, args.overrides, args.duration)
    notes = preflight(loaded)  # raises RtposeError: exit 2, before the banner
    protocol = loaded.protocol
    console = Console(stderr=False, highlight=False, soft_wrap=True)
    duration = f"{protocol.duration:g} s" if protocol.duration is not None else "until Ctrl-C"
    parts = [f"[bold]{loaded.name}[/bold]: {protocol.camera.backend} camera, model {loaded.export_dir.name} "
             f"on {protocol.model.engine}", f"{len(protocol.rules)} rule(s) -> {len(protocol.outputs)} output(s)"
             + (f" on the {protocol.daq.backend} DAQ" if protocol.daq is not None else ""), duration]
    if protocol.publisher.enabled:
        parts.append(f"publishing on {protocol.publisher.address}")
    console.print(", ".join(parts))
    for note in notes:
        console.print(f"note: {note}")
    with TerminalStatus(console) as status:  # a line redrawn twice a second, on a terminal only
        result = Daemon(loaded, on_status=status.update).run()
    if result.summary["wall_s"] is not None:  # the camera opened: there is a run to summarise
        print_summary(result.summary, console)
    if summary is not None:
        path = make_parent(summary)
        path.write_text(jsonsafe.dumps(result.summary, indent=2) + "\n")
        console.print(f"summary: {path}")
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr)
    return result.exit_code
