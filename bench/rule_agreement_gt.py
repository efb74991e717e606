"""Does the live loop trigger where the paper's rule holds on the ground-truth labels?

    .venv/bin/python bench/rule_agreement_gt.py                  # replay at 20 FPS, ~60 s
    .venv/bin/python bench/rule_agreement_gt.py --fps 150        # at the camera's rate (drops frames)
    .venv/bin/python bench/rule_agreement_gt.py --recording runs/RUN   # score an existing run

1. The rule of ``experiments/male_approach_replay.yaml`` is evaluated offline on the
   hand-labelled poses of ``clip.trainval.slp`` (frames 0-1199; every frame is labelled).
2. The daemon replays those frames through the model, the rules and the sim DAQ (in
   this process; publisher off, recorder on). Paced slowly enough, every frame is
   processed; otherwise only processed frames are compared.
3. Per processed frame, the recorded rule state is compared with the ground-truth one.

Prints the agreement, the confusion counts, precision and recall of the rule-true
frames, and how often the live run's pulses started on a ground-truth rule-true frame.
The figures measure the model (poses and identities), not the loop: the loop's rule
states equal an offline re-evaluation of its own poses (also printed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.live.daemon import Daemon
from rtpose.live.protocol import load_protocol
from rtpose.live.recorder import Recording, offline_rule_agreement, read_recording
from rtpose.paths import data_dir
from rtpose.poses import Poses
from rtpose.rules import evaluate_offline

REPO = Path(__file__).resolve().parent.parent


def ground_truth_rules(loaded, labels_path: Path, last_frame: int) -> dict[str, dict[int, bool]]:
    """Rule states on the labelled poses, by frame index (offline, frames at the clip's 150 FPS)."""
    labels = load_labels(labels_path, open_videos=False)
    nodes, classes = node_names(labels), class_names(labels)
    frames = sorted((f for f in user_frames(labels, labels_path) if f.frame_idx <= last_frame),
                    key=lambda f: f.frame_idx)
    poses = [Poses(f.points, np.ones(f.points.shape[:2], np.float32), np.ones(len(f.points), np.float32), f.classes,
                   np.eye(len(classes), dtype=np.float32)[np.maximum(f.classes, 0)]) for f in frames]
    times = [f.frame_idx / 150.0 for f in frames]
    offline = evaluate_offline(loaded.protocol, nodes, classes, loaded.protocol.arena.px_per_mm, poses, times)
    return {name: {f.frame_idx: bool(s) for f, s in zip(frames, states)} for name, states in offline.rules.items()}


def replay(loaded_path: str, fps: float, last_frame: int, run_dir: Path) -> Recording:
    overrides = [f"camera.fps={fps}", f"camera.frames=0-{last_frame}", "camera.loop=false",
                 "publisher.enabled=false", f"recorder.path={run_dir}", "recorder.export_slp=false",
                 "duration=null"]
    loaded = load_protocol(loaded_path, overrides)
    print(f"replaying frames 0-{last_frame} at {fps:g} FPS ({(last_frame + 1) / fps:.0f} s)...", flush=True)
    result = Daemon(loaded).run()
    frames, latency = result.summary["frames"], result.summary["latency_ms"]
    print(f"  stopped: {result.stop_reason}; {frames['acquired']} acquired = {frames['processed']} processed "
          f"+ {frames['dropped']} dropped; inference p50 {latency['inference']['p50']} ms, "
          f"p99 {latency['inference']['p99']} ms; overhead p50 {latency['overhead']['p50']} ms, "
          f"p99 {latency['overhead']['p99']} ms")
    return read_recording(run_dir)


def report(recording: Recording, truth: dict[str, dict[int, bool]]) -> None:
    frames = recording.frame.tolist()
    for name, by_frame in truth.items():
        rows = [i for i, f in enumerate(frames) if f in by_frame]
        live = np.array([bool(recording.rules[name][i]) for i in rows])
        gt = np.array([by_frame[frames[i]] for i in rows])
        tp, fp = int(np.sum(live & gt)), int(np.sum(live & ~gt))
        fn, tn = int(np.sum(~live & gt)), int(np.sum(~live & ~gt))
        agreement = float(np.mean(live == gt)) if len(rows) else float("nan")
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        print(f"rule {name}: {len(rows)} processed frames compared; true on {int(gt.sum())} by the ground truth, "
              f"{int(live.sum())} live")
        print(f"  agreement {100 * agreement:.1f}%  (TP {tp}, FP {fp}, FN {fn}, TN {tn}; "
              f"precision {precision:.3f}, recall {recall:.3f})")
    for output_name, output in recording.header["protocol"].get("outputs", {}).items():
        pulse = output.get("pulse")
        if not pulse or pulse["rule"] not in truth:
            continue
        volts = recording.volts[output_name]
        starts = [i for i in range(len(volts)) if volts[i] != 0 and (i == 0 or volts[i - 1] == 0)]
        on_truth = sum(truth[pulse["rule"]].get(frames[i], False) for i in starts)
        print(f"output {output_name}: {len(starts)} pulses started on processed frames; "
              f"{on_truth} of them on frames where the ground-truth rule holds")
    agreement = offline_rule_agreement(recording)
    print("live vs offline re-evaluation of the recorded poses: "
          + ", ".join(f"{k} {100 * v:.2f}%" for k, v in agreement.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(REPO / "experiments" / "male_approach_replay.yaml"))
    parser.add_argument("--labels", default=str(data_dir() / "flies13" / "clip.trainval.slp"))
    parser.add_argument("--fps", type=float, default=20.0, help="replay rate (the engine must keep up to see every frame)")
    parser.add_argument("--last-frame", type=int, default=1199)
    parser.add_argument("--recording", help="score this run directory instead of running the daemon")
    args = parser.parse_args()

    loaded = load_protocol(args.protocol)
    truth = ground_truth_rules(loaded, Path(args.labels), args.last_frame)
    print(f"ground truth: {Path(args.labels).name}, frames 0-{args.last_frame}: "
          + ", ".join(f"{name} true on {sum(v.values())} of {len(v)}" for name, v in truth.items()))
    if args.recording:
        recording = read_recording(args.recording)
    else:
        recording = replay(args.protocol, args.fps, args.last_frame, Path(tempfile.mkdtemp(prefix="rtpose-gt-")) / "run")
    print(f"model: {recording.header['model']} ({recording.header['engine']}, {recording.header['engine_device']})")
    report(recording, truth)


if __name__ == "__main__":
    main()
