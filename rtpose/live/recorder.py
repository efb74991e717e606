"""Everything a run did, on disk as it happens, readable even if the process is killed.

One directory per run holds ``record.msgpack``: a stream of msgpack maps, appended by
the recorder thread and flushed after every batch (fsync'd every ``fsync_s``), so a run
killed with SIGKILL or a power cut loses at most the last moments, and a reader simply
stops at the last complete map. No index, no footer needed. Maps, by ``type``:

- ``header`` (first): format, version, protocol (resolved) and its text, node and class
  names, skeleton edges, px_per_mm, model, engine, camera, the video of a replay,
  start time (wall clock and monotonic).
- ``frame``: a processed frame. ``frame`` (source index), ``seq``, ``t`` (exposure,
  arrival, ready, infer_start, infer_end, decision, output), ``n`` instances and the
  ``Poses`` arrays as little-endian bytes (``points`` float32 n x nodes x 2, NaN where
  missing; ``point_scores``, ``instance_scores``, ``identity_scores`` float32;
  ``identity`` int32), ``features`` (NaN kept), ``rules``, ``volts`` (by output) and
  ``written`` (DAQ channels this frame changed).
- ``drop``: frames acquired but not processed: ``reason``, ``seq``, ``count``, ``frame``.
- ``output``: DAQ writes no frame made (pulse off edges, the final 0 V).
- ``overflow``: records lost because the recorder fell behind (never expected).
- ``end`` (last, absent after a kill): why the run stopped, frame counts, final volts.

``read_recording`` gives it back as arrays and ``Poses``; ``export_slp`` writes the poses
as a SLEAP predictions file; ``offline_rule_agreement`` re-runs the protocol's rules on
the recorded poses. From a shell: ``rtpose recording RUN_DIR [-o out.slp]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
import msgpack
import numpy as np

from rtpose import clock
from rtpose.errors import RtposeError
from rtpose.live.records import DropRecord, FrameRecord, OutputEvent
from rtpose.live.worker import QueueWorker
from rtpose.poses import Poses
from rtpose.paths import no_such_file

FORMAT = "rtpose-recording"
VERSION = 1
RECORD_FILE = "record.msgpack"
_TIMES = ("exposure", "arrival", "ready", "infer_start", "infer_end", "decision", "output")


# --- writing --------------------------------------------------------------------------


def encode(item: FrameRecord | DropRecord | OutputEvent) -> dict[str, Any]:
    if isinstance(item, FrameRecord):
        poses = item.poses
        return {
            "type": "frame", "frame": int(item.frame), "seq": int(item.seq),
            "t": {name: getattr(item, name) for name in _TIMES},
            "n": len(poses),
            "points": np.ascontiguousarray(poses.points, "<f4").tobytes(),
            "point_scores": np.ascontiguousarray(poses.point_scores, "<f4").tobytes(),
            "instance_scores": np.ascontiguousarray(poses.instance_scores, "<f4").tobytes(),
            "identity": np.ascontiguousarray(poses.identity, "<i4").tobytes(),
            "identity_scores": np.ascontiguousarray(poses.identity_scores, "<f4").tobytes(),
            "features": {k: float(v) for k, v in item.features.items()},
            "rules": {k: bool(v) for k, v in item.rules.items()},
            "volts": {k: float(v) for k, v in item.volts.items()},
            "written": {k: float(v) for k, v in item.written.items()},
        }
    if isinstance(item, DropRecord):
        return {"type": "drop", "reason": item.reason, "seq": item.seq, "count": item.count,
                "frame": item.frame, "arrival": item.arrival}
    if isinstance(item, OutputEvent):
        return {"type": "output", "t": item.t, "written": dict(item.written), "reason": item.reason,
                "deadline": item.deadline}
    raise TypeError(f"cannot record {type(item).__name__}")


class Recorder(QueueWorker["FrameRecord | DropRecord | OutputEvent"]):
    """Appends records from a bounded queue in its own thread; ``offer`` never waits."""

    def __init__(self, directory: str | Path, header: dict[str, Any], queue_size: int = 4096,
                 fsync_s: float = 1.0, on_error: Callable[[BaseException], None] | None = None):
        super().__init__("rtpose-recorder", queue_size, batch_max=512, on_error=on_error)
        self.directory = Path(directory)
        self.path = self.directory / RECORD_FILE
        self._header = {"type": "header", "format": FORMAT, "version": VERSION, **header}
        self._fsync_s = fsync_s
        self._end: dict[str, Any] | None = None
        self._file = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._last_sync = 0.0
        self.written = 0
        self._overflow_reported = 0

    def start(self) -> None:
        """Create the directory and the file (never overwriting one) and write the header."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "xb")
        except FileExistsError:
            raise RtposeError(f"recorder: {self.path} already exists; choose another recorder.path") from None
        except OSError as exc:
            raise RtposeError(f"recorder: cannot create {self.path} ({exc.strerror})") from None
        self._file.write(msgpack.packb(self._header, use_bin_type=True))
        self._file.flush()
        self._last_sync = clock.now()
        self.start_thread()

    def handle(self, batch: list) -> None:
        """Append a batch, with an ``overflow`` record for what the queue lost since the last; flush."""
        chunks = [self._packer.pack(encode(item)) for item in batch]
        lost = self.overflow - self._overflow_reported
        if lost:
            chunks.append(self._packer.pack({"type": "overflow", "lost": lost, "t": clock.now()}))
            self._overflow_reported += lost
        self._file.write(b"".join(chunks))
        self._file.flush()
        self.written += len(batch)
        if clock.now() - self._last_sync >= self._fsync_s:
            os.fsync(self._file.fileno())
            self._last_sync = clock.now()

    def finish(self) -> None:
        """The ``end`` record, then flush and fsync."""
        if self._end is not None:
            self._file.write(self._packer.pack({"type": "end", **self._end}))
        self._file.flush()
        os.fsync(self._file.fileno())

    def cleanup(self) -> None:
        """Close the file."""
        self._file.close()

    def close(self, end: dict[str, Any] | None = None, timeout_s: float = 10.0) -> None:
        """Write what is queued, then ``end`` (the run's outcome), and close the file."""
        self._end = end
        self.stop(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "offered": self.offered, "written": self.written,
                "queue_overflow": self.overflow}


# --- reading --------------------------------------------------------------------------


@attrs.define
class Recording:
    """A recording as arrays: one row per processed frame, in processing order."""

    path: Path
    header: dict[str, Any]
    frame: np.ndarray  # (T,) int64 source index
    seq: np.ndarray  # (T,) int64
    t: dict[str, np.ndarray]  # exposure, arrival, ready, infer_start, infer_end, decision, output
    poses: list[Poses]
    features: dict[str, np.ndarray]  # (T,) float64, NaN where missing
    rules: dict[str, np.ndarray]  # (T,) bool
    volts: dict[str, np.ndarray]  # (T,) float64 by output name
    written: list[dict[str, float]]  # per frame
    drops: list[dict[str, Any]]
    output_events: list[dict[str, Any]]
    overflow_lost: int
    end: dict[str, Any] | None  # None: the run did not finish writing (killed)
    complete_bytes: int  # bytes of complete maps; less than the file size after a kill mid-write

    @property
    def node_names(self) -> list[str]:
        return list(self.header["node_names"])

    @property
    def class_names(self) -> list[str]:
        return list(self.header["class_names"])

    @property
    def px_per_mm(self) -> float:
        return float(self.header["px_per_mm"])

    @property
    def dropped(self) -> int:
        return sum(int(d["count"]) for d in self.drops)

    def trigger_sections(self):
        """The protocol's ``features``, ``rules`` and ``outputs``, as recorded."""
        from rtpose.rules import TriggerSections

        protocol = self.header["protocol"]
        return TriggerSections.model_validate({k: protocol.get(k, {}) for k in ("features", "rules", "outputs")})


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete map of a recording (a run directory or its record file), in order."""
    for item, _ in _iter_with_offsets(_record_file(path)):
        yield item


def _record_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    if not path.is_file():
        raise RtposeError(no_such_file(path, "recording"))
    return path


def _iter_with_offsets(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=1 << 30)
        for item in unpacker:
            yield item, unpacker.tell()


def read_recording(path: str | Path) -> Recording:
    """Read a run directory's ``record.msgpack`` (complete or cut short by a kill)."""
    path = _record_file(path)
    header: dict[str, Any] | None = None
    frames, drops, events, end = [], [], [], None
    overflow_lost = 0
    complete = 0
    for item, offset in _iter_with_offsets(path):
        complete = offset
        kind = item.get("type") if isinstance(item, dict) else None
        if header is None:
            if kind != "header" or item.get("format") != FORMAT:
                raise RtposeError(f"{path}: not an rtpose recording")
            if int(item.get("version", 0)) > VERSION:
                raise RtposeError(f"{path}: recording version {item['version']} is newer than this rtpose reads")
            header = item
        elif kind == "frame":
            frames.append(item)
        elif kind == "drop":
            drops.append(item)
        elif kind == "output":
            events.append(item)
        elif kind == "overflow":
            overflow_lost += int(item["lost"])
        elif kind == "end":
            end = item
    if header is None:
        raise RtposeError(f"{path}: empty recording (no header)")
    n_nodes, n_classes = len(header["node_names"]), len(header["class_names"])
    feature_names = list(header["protocol"].get("features", {}))
    rule_names = list(header["protocol"].get("rules", {}))
    output_names = list(header["protocol"].get("outputs", {}))
    return Recording(
        path=path,
        header=header,
        frame=np.array([f["frame"] for f in frames], np.int64),
        seq=np.array([f["seq"] for f in frames], np.int64),
        t={name: np.array([f["t"][name] for f in frames], np.float64) for name in _TIMES},
        poses=[_poses(f, n_nodes, n_classes) for f in frames],
        features={n: np.array([f["features"].get(n, np.nan) for f in frames], np.float64) for n in feature_names},
        rules={n: np.array([bool(f["rules"].get(n, False)) for f in frames], bool) for n in rule_names},
        volts={n: np.array([f["volts"].get(n, np.nan) for f in frames], np.float64) for n in output_names},
        written=[f["written"] for f in frames],
        drops=drops,
        output_events=events,
        overflow_lost=overflow_lost,
        end=end,
        complete_bytes=complete,
    )


def _poses(item: dict[str, Any], n_nodes: int, n_classes: int) -> Poses:
    n = int(item["n"])

    def array(key: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(item[key], dtype).reshape(shape).astype(dtype[1:], copy=True)

    return Poses(
        points=array("points", "<f4", (n, n_nodes, 2)),
        point_scores=array("point_scores", "<f4", (n, n_nodes)),
        instance_scores=array("instance_scores", "<f4", (n,)),
        identity=array("identity", "<i4", (n,)),
        identity_scores=array("identity_scores", "<f4", (n, n_classes)),
    )


# --- using a recording ----------------------------------------------------------------


def offline_rule_agreement(recording: Recording) -> dict[str, float]:
    """Fraction of processed frames on which each recorded rule state equals an offline re-evaluation.

    The offline pass runs the recorded protocol's rules over the recorded poses with the
    same ``t`` (the decision time) and ``frame_time`` (exposure) the daemon used.
    """
    from rtpose.rules import evaluate_offline, rule_agreement

    offline = evaluate_offline(recording.trigger_sections(), recording.node_names, recording.class_names,
                               recording.px_per_mm, recording.poses, recording.t["decision"],
                               frame_times=recording.t["exposure"])
    return rule_agreement(recording.rules, offline)


def export_slp(recording: Recording | str | Path, out_path: str | Path) -> Path:
    """The recorded poses as a SLEAP predictions file (one labeled frame per source frame).

    A looping replay processes a source frame more than once; the last processing wins.
    """
    from rtpose.data.predictions import write_predictions

    if not isinstance(recording, Recording):
        recording = read_recording(recording)
    latest = {int(frame): poses for frame, poses in zip(recording.frame.tolist(), recording.poses)}
    header = recording.header
    video = header.get("video") or header.get("camera", {}).get("name", "camera")
    from rtpose.engine.predict import model_provenance

    continuity = ((header.get("protocol") or {}).get("model") or {}).get("identity_continuity", True)
    provenance = {**(model_provenance(header["model"], header.get("engine"), header.get("engine_graph"), continuity)
                     if header.get("model") else {}),
                  "rtpose.version": header.get("rtpose_version"),
                  "rtpose.protocol": header.get("protocol_path"), "rtpose.recording": str(recording.path),
                  "rtpose.started_at": header.get("started_at"),
                  "rtpose.run_ended": str(recording.end.get("reason")) if recording.end else
                  "no end record: the run was killed, the file holds what was recorded",
                  "rtpose.frames_processed": len(recording.frame), "rtpose.frames_dropped": int(recording.dropped)}
    return write_predictions(out_path, video, recording.node_names, [tuple(e) for e in header["edges"]],
                             recording.class_names, sorted(latest.items()),
                             provenance={k: v for k, v in provenance.items() if v is not None})


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """``rtpose recording RUN_DIR [-o OUT.slp [--overwrite]]`` (also ``python -m rtpose.live.recorder``)."""
    if not isinstance(args, argparse.Namespace):
        from rtpose.cli import build_parser  # the same arguments as ``rtpose recording``

        args = build_parser().parse_args(["recording", *(sys.argv[1:] if args is None else args)])
    try:
        if args.output:  # before anything is read: a refused run costs nothing
            from rtpose.data.predictions import check_slp_output
            from rtpose.paths import check_writable, claim_output_file

            check_slp_output(Path(args.output))
            claim_output_file(Path(args.output), args.overwrite)
            check_writable(Path(args.output))
        recording = read_recording(args.recording)
        print(f"{recording.path}: {len(recording.frame)} processed frames, {recording.dropped} dropped, "
              f"{'ended: ' + str(recording.end.get('reason')) if recording.end else 'no end record (killed?)'}")
        for name, agreement in offline_rule_agreement(recording).items():
            print(f"rule {name}: true on {int(recording.rules[name].sum())} frames; "
                  f"offline agreement {100 * agreement:.2f}%")
        if args.output:
            print(f"wrote {export_slp(recording, args.output)}")
    except RtposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
