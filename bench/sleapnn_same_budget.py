"""sleap-nn 0.3.5 trained on the frames and for the time `make model` uses, scored like ours.

Usage (in a side environment with sleap-nn, never a dependency of rtpose; the one
../shared/tools/peer_latency.sh builds):

    $PEER_ENV/bin/python bench/sleapnn_same_budget.py [-o runs/sleapnn_same_budget]
        [--centroid-minutes 3.5] [--instance-minutes 14]

1. Writes ``train.slp`` and ``val.slp`` with the frames of experiments/train/flies13_close.yaml
   (training: clip.trainval.slp 0-999 every 10th and 1000-1149, clip.close.slp 1200-1269;
   validation: 1150-1199 and 1270-1299), the tracks of both files merged by name.
2. Trains sleap-nn's standard top-down ID model (../shared/peer/configs: centroid.yaml and
   ci_id3.yaml, its UNet, its learning rate and batch size) on them, each network for the
   wall-clock minutes our YAML gives it in CPU time (3.5 and 14; on an idle machine the
   two clocks agree). It is stopped by SIGINT, on which Lightning ends the epoch loop
   and keeps the best checkpoint so far.
3. Exports the result with ``rtpose export`` (its sleap-nn importer, fp32) and scores it
   with bench/close_encounters.py, exactly as our models are scored.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FLIES = SHARED / "data" / "flies13"
CONFIGS = SHARED / "peer" / "configs"
RUNS = {"centroid": "centroid.yaml", "centered_instance_id": "ci_id3.yaml"}


def write_labels(out: Path) -> None:
    import sleap_io as sio

    clip = sio.load_video(str(FLIES / "clip.mp4"))
    trainval = sio.load_slp(str(FLIES / "clip.trainval.slp"))
    close = sio.load_slp(str(FLIES / "clip.close.slp"))
    tracks = {t.name: t for t in trainval.tracks}

    def frames(labels, keep) -> list:
        out = []
        for lf in labels.labeled_frames:
            if keep(lf.frame_idx) and lf.user_instances:
                lf.video = clip
                lf.instances = list(lf.user_instances)
                for inst in lf.instances:  # the close file's tracks are other objects of the same names
                    inst.track = tracks[inst.track.name] if inst.track is not None else None
                    inst.skeleton = trainval.skeletons[0]
                out.append(lf)
        return out

    train = frames(trainval, lambda i: (i < 1000 and i % 10 == 0) or 1000 <= i <= 1149)
    train += frames(close, lambda i: 1200 <= i <= 1269)
    val = frames(trainval, lambda i: 1150 <= i <= 1199) + frames(close, lambda i: 1270 <= i <= 1299)
    for name, lfs in (("train", train), ("val", val)):
        sio.Labels(labeled_frames=lfs, videos=[clip], skeletons=trainval.skeletons,
                   tracks=trainval.tracks).save(str(out / f"{name}.slp"))
        print(f"{name}.slp: {len(lfs)} frames, {sum(len(lf.instances) for lf in lfs)} instances", flush=True)


def write_config(src: Path, dst: Path, out: Path, run_name: str) -> None:
    text = src.read_text()
    text = text.replace("[train.slp]", f"[{out / 'train.slp'}]").replace("[val.slp]", f"[{out / 'val.slp'}]")
    text = re.sub(r"max_epochs: \d+", "max_epochs: 100000", text)  # the clock stops it
    text = text.replace("ckpt_dir: models", f"ckpt_dir: {out / 'models'}")
    text = re.sub(r"run_name: \S+", f"run_name: {run_name}", text)
    dst.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(REPO / "runs" / "sleapnn_same_budget"))
    ap.add_argument("--centroid-minutes", type=float, default=3.5)
    ap.add_argument("--instance-minutes", type=float, default=14.0)
    args = ap.parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out)
    sleap_nn = Path(sys.executable).parent / "sleap-nn"
    for (run, config), minutes in zip(RUNS.items(), (args.centroid_minutes, args.instance_minutes)):
        write_config(CONFIGS / config, out / config, out, run)
        print(f"training {run} ({config}) for {minutes} min ...", flush=True)
        with open(out / f"{run}.log", "w") as log:
            subprocess.run(["timeout", "-s", "INT", "-k", "60", str(int(minutes * 60)), str(sleap_nn), "train",
                            str(out / config)], stdout=log, stderr=subprocess.STDOUT, check=False)
        if not (out / "models" / run / "best.ckpt").exists():
            raise SystemExit(f"sleap-nn wrote no checkpoint for {run} (see {out / f'{run}.log'})")
    py = REPO / ".venv" / "bin" / "python"
    export = out / "export"
    subprocess.run([str(py), "-m", "rtpose", "export", *(str(out / "models" / r) for r in RUNS), "-o", str(export),
                    "--max-instances", "2", "--video", str(FLIES / "clip.mp4")], check=True)
    subprocess.run([str(py), str(REPO / "bench" / "close_encounters.py"), "-m", str(export),
                    "--json", str(out / "close_encounters.json")], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
