"""sleap-nn 0.3.5 trained on the frames and for the time of an rtpose training config, scored like ours.

Usage (in a side environment with sleap-nn, never a dependency of rtpose; the one
../shared/tools/peer_latency.sh builds):

    $PEER_ENV/bin/python bench/sleapnn_same_budget.py [-c experiments/train/flies13_close.yaml]
        [-o runs/sleapnn_same_budget] [--centroid-minutes M] [--instance-minutes M]
    # the mice of issue 11: the config `rtpose train LABELS.slp` derived and saved
    $PEER_ENV/bin/python bench/sleapnn_same_budget.py -c runs/mice2/config.yaml -o runs/sleapnn_mice2

1. Writes ``train.slp`` and ``val.slp`` with the config's frames (``data.labels``,
   ``data.train_frames`` and ``data.val_frames``, read with rtpose's own frame selection),
   the tracks of several label files merged by name.
2. Trains sleap-nn's standard top-down ID model (../shared/peer/configs: centroid.yaml and
   ci_id3.yaml: its UNet, its learning rate and batch size) on them, with the config's
   anchor part, instance crop size and classes, each network for the minutes the config
   gives ours (``centroid.optim.max_minutes``; the instance network gets the rest of
   ``budget_minutes`` where a derived config has one, else ``instance.optim.max_minutes``),
   as wall-clock time: on an idle machine CPU time and wall clock agree. It is stopped by
   SIGINT, on which Lightning ends the epoch loop and keeps the best checkpoint so far.
3. Exports the result with ``rtpose export`` (its sleap-nn importer, fp32), predicts the
   validation frames with ``rtpose predict --only-labeled`` and scores them with ``rtpose
   eval``, as ``rtpose train``'s own report does; for the fly clip's close-courtship config
   also with bench/close_encounters.py, exactly as our fly models are scored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
CONFIGS = SHARED / "peer" / "configs"
RUNS = {"centroid": "centroid.yaml", "centered_instance_id": "ci_id3.yaml"}
PY = REPO / ".venv" / "bin" / "python"  # rtpose's own environment: export, predict and eval run there

from rtpose.data.samples import parse_frame_selection  # noqa: E402  (numpy and attrs only)


def selected(text: str | None):
    spans = parse_frame_selection(text) if text else []
    return lambda i: any(a <= i <= b and (i - a) % step == 0 for a, b, step in spans)


def label_paths(data: dict) -> list[Path]:
    os.environ.setdefault("RTPOSE_DATA", str(SHARED / "data"))
    paths = data["labels"] if isinstance(data["labels"], list) else [data["labels"]]
    return [Path(os.path.expandvars(str(p))) for p in paths]


def open_video(labels, path: Path):
    """The labels' video, or the one of the same name beside the labels file."""
    import sleap_io as sio

    name = Path(labels.videos[0].filename)
    for candidate in (name, path.parent / name.name):
        if candidate.exists():
            return sio.load_video(str(candidate))
    raise SystemExit(f"{path}: its video {name} is not there, nor beside the labels")


def write_labels(data: dict, out: Path) -> tuple[list[str], Path]:
    """train.slp and val.slp in ``out``; returns the class names and the video path."""
    import sleap_io as sio

    if not data.get("val_frames"):
        raise SystemExit("the config has no data.val_frames: give the validation block as frames")
    files = [(p, sio.load_slp(str(p))) for p in label_paths(data)]
    first = files[0][1]
    tracks = {t.name: t for _, labels in files for t in labels.tracks}
    videos: dict[str, object] = {}
    train_keep, val_keep = selected(data.get("train_frames")), selected(data["val_frames"])
    train, val = [], []
    for path, labels in files:
        video = open_video(labels, path)
        video = videos.setdefault(str(Path(video.filename).resolve()), video)
        for lf in labels.labeled_frames:
            if not lf.user_instances:
                continue
            lf.video = video
            lf.instances = list(lf.user_instances)
            for inst in lf.instances:  # another file's tracks are other objects of the same names
                inst.track = tracks[inst.track.name] if inst.track is not None else None
                inst.skeleton = first.skeletons[0]
            if val_keep(lf.frame_idx):
                val.append(lf)
            elif data.get("train_frames") is None or train_keep(lf.frame_idx):
                train.append(lf)
    for name, lfs in (("train", train), ("val", val)):
        sio.Labels(labeled_frames=lfs, videos=list(videos.values()), skeletons=first.skeletons,
                   tracks=list(tracks.values())).save(str(out / f"{name}.slp"))
        print(f"{name}.slp: {len(lfs)} frames, {sum(len(lf.instances) for lf in lfs)} instances", flush=True)
    return list(tracks), Path(next(iter(videos.values())).filename)


def write_config(src: Path, dst: Path, out: Path, run_name: str, cfg: dict, classes: list[str]) -> None:
    text = src.read_text()
    text = text.replace("[train.slp]", f"[{out / 'train.slp'}]").replace("[val.slp]", f"[{out / 'val.slp'}]")
    text = re.sub(r"max_epochs: \d+", "max_epochs: 100000", text)  # the clock stops it
    text = text.replace("ckpt_dir: models", f"ckpt_dir: {out / 'models'}")
    text = re.sub(r"run_name: \S+", f"run_name: {run_name}", text)
    text = re.sub(r"anchor_part: \S+", f"anchor_part: {cfg['data']['anchor_part']}", text)
    text = re.sub(r"crop_size: \d+", f"crop_size: {int(cfg['instance']['crop_size'])}", text)
    text = re.sub(r"classes: \[[^\]]*\]", f"classes: [{', '.join(classes)}]", text)
    dst.write_text(text)


def budgets(cfg: dict) -> tuple[float, float]:
    centroid = float(cfg["centroid"]["optim"]["max_minutes"])
    if cfg.get("budget_minutes"):
        return centroid, float(cfg["budget_minutes"]) - centroid
    return centroid, float(cfg["instance"]["optim"]["max_minutes"])


def score(out: Path, export: Path, data: dict) -> dict:
    """``rtpose predict --only-labeled`` on each labels file's validation block, ``rtpose eval``."""
    import sleap_io as sio

    py = str(PY)
    val_keep = selected(data["val_frames"])
    scores = {}
    for k, path in enumerate(label_paths(data)):
        idx = sorted(lf.frame_idx for lf in sio.load_slp(str(path)).labeled_frames
                     if lf.user_instances and val_keep(lf.frame_idx))
        if not idx:
            continue
        span = f"{idx[0]}-{idx[-1]}"
        pred, result = out / f"val{k}.predictions.slp", out / f"val{k}.eval.json"
        subprocess.run([py, "-m", "rtpose", "predict", "-m", str(export), "-i", str(path), "--frames", span,
                        "--only-labeled", "--fp32", "-o", str(pred), "--overwrite"], check=True)
        subprocess.run([py, "-m", "rtpose", "eval", "-g", str(path), "-p", str(pred), "--frames", span,
                        "--json", str(result), "--overwrite"], check=True)
        scores[f"{path.name} {span}"] = json.loads(result.read_text())
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", default=str(REPO / "experiments" / "train" / "flies13_close.yaml"),
                    help="rtpose training config whose frames and minutes to use")
    ap.add_argument("-o", "--output", default=str(REPO / "runs" / "sleapnn_same_budget"))
    ap.add_argument("--centroid-minutes", type=float, help="default: the config's")
    ap.add_argument("--instance-minutes", type=float, help="default: the config's")
    ap.add_argument("--score-only", action="store_true", help="export and score the checkpoints already in -o")
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    classes, video = write_labels(cfg["data"], out)
    minutes = budgets(cfg)
    minutes = (args.centroid_minutes or minutes[0], args.instance_minutes or minutes[1])
    sleap_nn = Path(sys.executable).parent / "sleap-nn"
    for (run, config), budget in zip(RUNS.items(), minutes):
        if args.score_only:
            break
        write_config(CONFIGS / config, out / config, out, run, cfg, classes)
        print(f"training {run} ({config}) for {budget:.2f} min ...", flush=True)
        with open(out / f"{run}.log", "w") as log:
            subprocess.run(["timeout", "-s", "INT", "-k", "60", str(int(budget * 60)), str(sleap_nn), "train",
                            str(out / config)], stdout=log, stderr=subprocess.STDOUT, check=False)
    for run in RUNS:
        if not (out / "models" / run / "best.ckpt").exists():
            raise SystemExit(f"sleap-nn wrote no checkpoint for {run} (see {out / f'{run}.log'})")
    export = out / "export"
    subprocess.run([str(PY), "-m", "rtpose", "export", *(str(out / "models" / r) for r in RUNS), "-o", str(export),
                    "--max-instances", str(len(classes)), "--video", str(video), "--overwrite"], check=True)
    scores = score(out, export, cfg["data"])
    for block, r in scores.items():
        d = r.get("dist_px") or {}
        fig = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731  (None: nothing matched to measure)
        print(f"sleap-nn, {block}: OKS mAP {fig(r['map'], '.3f')}, {r['n_found']} of {r['n_gt']} instances found, "
              f"node error p50/p90 {fig(d.get('p50'), '.2f')} / {fig(d.get('p90'), '.2f')} px, "
              f"identity {fig(r.get('id_accuracy'), '.1%')}", flush=True)
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    if any(p.name == "clip.close.slp" for p in label_paths(cfg["data"])):
        subprocess.run([str(PY), str(REPO / "bench" / "close_encounters.py"), "-m", str(export),
                        "--json", str(out / "close_encounters.json")], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
