"""The ``rtpose`` command: argument parsing only.

Each subcommand hands its parsed arguments to a ``main(args)`` function in the package
that owns the work, imported only when that subcommand runs, so ``rtpose run`` never
imports torch and ``rtpose --help`` stays instant.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from rtpose import __version__
from rtpose.errors import Interrupted, RtposeError

# subcommand -> module whose main(args) -> int does the work
HANDLERS = {
    "train": "rtpose.train.command",
    "export": "rtpose.export.command",
    "predict": "rtpose.engine.predict",
    "bench": "rtpose.engine.bench",
    "check": "rtpose.engine.check",
    "eval": "rtpose.eval.command",
    "run": "rtpose.live.command",
    "calibrate": "rtpose.calibrate.command",
    "listen": "rtpose.live.listen",
    "view": "rtpose.view.command",
    "recording": "rtpose.live.recorder",
}


def _frames_arg(p: argparse.ArgumentParser, default: str = "every frame") -> None:
    p.add_argument(
        "--frames",
        metavar="RANGE",
        help=f"frames START-END, both included (e.g. 1200-1499), or one index (default: {default})",
    )


def _overrides_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol value by its dotted key (repeatable), e.g. daq.loopback_delay_ms=5",
    )


def _precision_arg(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--int8", dest="precision", action="store_const", const="int8", default="auto",
                       help="run the export's int8 graph (default: ort-cpu runs int8 where it passes its "
                            "self-check and is faster on this machine)")
    group.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="run the fp32 graph")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, as every other error a user can cause, and options are
    never abbreviated (``--frame`` is not silently ``--frames``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rtpose", description="Real-time closed-loop multi-animal pose tracking."
    )
    parser.add_argument("--version", action="version", version=f"rtpose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a top-down ID model (centroid + centered-instance)")
    p.add_argument("config", help="training config YAML (see experiments/train/), or a SLEAP labels file "
                                  "(.slp, .pkg.slp): every setting derived from the labels and this machine")
    p.add_argument("-o", "--output", help="model directory (default: from the config; runs/LABELS for a .slp)")
    p.add_argument("--minutes", type=float, default=None,
                   help="with a .slp: wall-clock budget of the whole run (default 20)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was stopped from the model dir's last checkpoint "
                        "(a finished run, with model.json, is refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already trained in the model dir (without it, such a dir is refused)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key (repeatable)")

    p = sub.add_parser("export", help="export a trained model (rtpose, sleap-nn or SLEAP 1.x) to one ONNX graph")
    p.add_argument("model_dir", nargs="+", metavar="MODEL_DIR",
                   help="model directory written by `rtpose train`, or the centroid and centered-instance "
                        "directories of a sleap-nn (best.ckpt) or SLEAP 1.x (best_model.h5) top-down model")
    p.add_argument("-o", "--output", required=True,
                   help="export directory (model.onnx, model.int8.onnx with --int8, reference.npz, rtpose.json)")
    p.add_argument("--max-instances", type=int, default=None,
                   help="instances per frame (default: the number of identity classes, or the most instances of a "
                        "training frame where an rtpose run records more; 1 for an imported model without classes)")
    p.add_argument("--frame-size", metavar="HxW",
                   help="frame size the graph takes (default: the training video's, or --video's; a SLEAP 1.x model "
                        "records none)")
    p.add_argument("--int8", action="store_true",
                   help="also write an int8 graph (7-bit weights: same results with or without VNNI), "
                        "checked against fp32; one that fails its checks is not written (the fp32 graph is; "
                        "exit status 3)")
    p.add_argument("--calibration-frames", type=int, default=50,
                   help="frames that calibrate --int8: training frames, or --video's (default %(default)s)")
    p.add_argument("--video", help="a video of the setup: a real frame for the export check and, for imported "
                                   "models, the frames that calibrate --int8")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export already in the export directory (without it, such a dir is refused)")

    p = sub.add_parser(
        "predict", help="predict poses on videos or .slp files and write .slp",
        description="One input: poses in one process. Several inputs, a folder, a quoted glob pattern, or "
                    "--workers/--ray: on Ray (pip install 'rtpose[fleet]'), one .slp per input and manifest.json "
                    "in the output folder; the same command again resumes an interrupted run. "
                    "Exit status: 0; 2 for bad input (nothing written); 3 when frames asked for could not be "
                    "read (undecodable, or past the real end of the stream) or, on Ray, an input failed: the "
                    "poses of every frame read are written and the .slp lists the others (provenance "
                    "rtpose.frames_not_read).")
    p.add_argument("-m", "--model", required=True, help="export directory")
    p.add_argument("-i", "--input", required=True, nargs="+", action="extend", metavar="INPUT",
                   help="video file, or .slp (predicts on its video; on a package, .pkg.slp, on the frames it "
                        "holds); several files, folders or quoted glob patterns (-i A B, or -i A -i B) run on Ray")
    _frames_arg(p, "every frame the input holds")
    p.add_argument("-o", "--output", help="one input: output .slp (default: INPUT.predictions.slp, or in the "
                   "working directory when the input's folder is read-only); on Ray: the output folder "
                   "(default: ./rtpose-predictions)")
    p.add_argument("--overwrite", action="store_true",
                   help="one input: replace an existing output .slp (without it, an existing one is refused "
                        "before any work)")
    p.add_argument("--workers", type=int, help="Ray workers, each with its own engine (default: one per chunk, "
                   "up to one per CPU); runs on Ray even for one input")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per Ray worker (default: as many as fit "
                   "the nodes' CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", help="Ray cluster to run on (default: $RAY_ADDRESS, else a "
                   "local Ray on this machine)")
    p.add_argument("--chunk-frames", type=int, help="frames per chunk of work on Ray (default: 500)")
    p.add_argument("--batch-size", type=int, default=1, help="frames per engine call (default: %(default)s)")
    p.add_argument("--engine", default="ort-cpu", help="ort-cpu (default), ort-cuda, ort-tensorrt, torch-cuda")
    _precision_arg(p)
    p.add_argument("--only-labeled", action="store_true", help="with a .slp input: only its labeled frames")
    p.add_argument("--no-continuity", action="store_true",
                   help="identities from the identity head alone, even where it calls two animals the same "
                        "class (default: such frames keep the previous frame's identities, matched by position)")

    p = sub.add_parser("bench", help="time the round trip frame -> Poses at batch size 1")
    p.add_argument("-m", "--model", required=True, help="export directory")
    p.add_argument("-i", "--input", required=True, help="video file, or .slp (its video, or a package's frames)")
    _frames_arg(p, "the first 100 frames of the input, or all of a shorter one")
    p.add_argument("--batch-size", type=int, default=1, help="frames per engine call (default: %(default)s)")
    p.add_argument("--engine", default="ort-cpu", help="ort-cpu (default), ort-cuda, ort-tensorrt, torch-cuda")
    _precision_arg(p)
    p.add_argument("--json", dest="json_out", help="write the figures as JSON")
    p.add_argument("--histogram", help="write a latency histogram (PNG, or another format matplotlib writes, by the extension)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames first (default: %(default)s)")
    p.add_argument("--no-batch-sweep", action="store_true", help="skip the throughput sweep over batch sizes")

    p = sub.add_parser("check", help="run an export's graphs on its reference frames here and compare")
    p.add_argument("-m", "--model", required=True, help="export directory")
    p.add_argument("--engine", default="ort-cpu", help="ort-cpu (default), ort-cuda, ort-tensorrt, torch-cuda")
    p.add_argument("--json", dest="json_out", help="write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("eval", help="score predictions against ground truth (OKS mAP, errors, identity)")
    p.add_argument("-g", "--ground-truth", required=True, help="ground-truth .slp")
    p.add_argument("-p", "--predictions", required=True, help="predicted .slp")
    p.add_argument("--px-per-mm", type=float, help="also report errors in mm")
    p.add_argument("--pck-px", type=float, default=5.0, help="PCK distance threshold in pixels (default: %(default)s)")
    p.add_argument("--json", dest="json_out", help="write every figure as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--anchor-part", metavar="NODE",
                   help="node whose distance to the other animals' splits the figures (default: the anchor part "
                        "of the rtpose model that made the predictions, as its training report used; else box centre)")
    p.add_argument("--animal-size", type=float, metavar="PX",
                   help="unit of that distance (default: the one that model's training labels gave, its training "
                        "report's; else the median sqrt(box area) of the scored labels)")
    p.add_argument("--unpredicted-frames", choices=("skip", "missed"), default="skip",
                   help="labeled frames the predictions file has no frame for: leave them out (default, "
                        "as sleap-nn does) or count their instances as missed")
    _frames_arg(p, "every labeled frame")

    p = sub.add_parser(
        "run", help="run a closed-loop experiment from a protocol file",
        description="Checks the protocol, the replay source and the publisher address before anything opens, "
                    "runs until the protocol's duration, the end of a replayed source, Ctrl-C or SIGTERM, and "
                    "writes 0 V to every output on every way out. Exit status: 0 ended as asked; 130 Ctrl-C "
                    "(SIGINT), 143 SIGTERM (a clean stop, summary and recording complete); 2 a mistake found "
                    "before acquisition (protocol, source, address in use, existing recording directory); 1 "
                    "something failed during the run.")
    p.add_argument("protocol", help="protocol YAML (see experiments/)")
    p.add_argument("--duration", type=float, help="seconds (overrides the protocol)")
    _overrides_arg(p)
    p.add_argument("--summary", help="write the run summary JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("calibrate", help="measure end-to-end latency through an AO->AI loopback",
                       description="Measure end-to-end latency through an AO->AI loopback. Exit status: 0; 1 too "
                       "few usable segments, or the run failed; 2 a mistake found before the run; 130 Ctrl-C, "
                       "143 SIGTERM (the report covers the time that ran). 0 V on every output in every case.")
    p.add_argument("protocol", help="calibration protocol YAML (experiments/latency_calibration.yaml)")
    p.add_argument("--duration", type=float, help="seconds (overrides the protocol)")
    _overrides_arg(p)
    p.add_argument("--report", help="write the report JSON here (a histogram PNG goes beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("listen", help="print or record a pose stream from a running daemon",
                       description="Print or record a pose stream from a running daemon. Exit status: 0 after "
                                   "--count messages; 130 Ctrl-C (SIGINT), 143 SIGTERM (what arrived is kept); 2 a "
                                   "mistake found before listening (address, output file).")
    p.add_argument("address", nargs="?", default="tcp://127.0.0.1:5555",
                   help="the daemon's publisher.address, as tcp://HOST:PORT (default %(default)s)")
    p.add_argument("-o", "--output", help="record messages to this file (msgpack stream)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--count", type=int, help="stop after this many messages (default: until Ctrl-C)")
    p.add_argument("--topic", default="poses", help="the daemon's publisher.topic (default %(default)s)")
    p.add_argument("--latest", action="store_true",
                   help="receive only the newest message each time (ZMQ_CONFLATE): for a listener slower than the "
                        "stream, which otherwise falls behind by what the sockets and kernel buffers hold")

    p = sub.add_parser("view", help="a live view of a running daemon in a web browser",
                       description="Serve a live view of a running daemon's pose stream to a web browser, until "
                                   "Ctrl-C or SIGTERM. Exit status: 130 Ctrl-C (SIGINT), 143 SIGTERM; 2 a mistake "
                                   "found before serving (address, port in use).")
    p.add_argument("address", nargs="?", default="tcp://127.0.0.1:5555",
                   help="the daemon's publisher.address (default tcp://127.0.0.1:5555)")
    p.add_argument("--port", type=int, default=8050, help="HTTP port of the page (default 8050)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to serve on (default 127.0.0.1, this computer only; 0.0.0.0 for every one)")
    p.add_argument("--topic", default="poses", help="the daemon's publisher.topic (default poses)")
    p.add_argument("--stale", dest="stale_s", type=float, default=2.0, metavar="S",
                   help="no message for this long during a run: the page says the stream is stale (default 2)")
    p = sub.add_parser("recording", help="summarise a run's recording, or write its poses as .slp (also after a kill)")
    p.add_argument("recording", help="run directory or its record.msgpack")
    p.add_argument("-o", "--output", help="write the poses as a SLEAP predictions file (.slp)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    for command in sub.choices.values():  # an unknown option is reported by its command's parser (main)
        command.set_defaults(command_parser=command)
    return parser


def _handler(args: argparse.Namespace) -> str:
    """The module that runs the command: ``predict`` over several inputs runs on Ray."""
    if args.command == "predict":
        from rtpose.fleet.inputs import use_fleet

        if use_fleet(args.input, args.workers, args.ray, args.chunk_frames):
            return "rtpose.fleet.run"
    return HANDLERS[args.command]


def main(argv: list[str] | None = None) -> int:
    # FFmpeg's own log lines ("moov atom not found") would come before rtpose's one line about the
    # same file; OpenCV reads this before its first capture. A value the user set is kept.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    if given and not given[0].startswith("-") and given[0] not in HANDLERS:  # a mistyped command
        close = difflib.get_close_matches(given[0], list(HANDLERS), n=1)
        if close:
            parser.error(f"unknown command {given[0]!r}; did you mean '{close[0]}'?")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [s for action in args.command_parser._actions for s in action.option_strings]
        close = [difflib.get_close_matches(u.split("=", 1)[0], known, n=1) for u in unknown if u.startswith("--")]
        hint = "; did you mean " + " / ".join(c[0] for c in close if c) + "?" if any(close) else ""
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    try:
        handler = importlib.import_module(_handler(args))
        return int(handler.main(args) or 0)
    except RtposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if not isinstance(exc, Interrupted):  # else the command has said what it kept
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
