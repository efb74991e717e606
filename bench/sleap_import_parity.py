"""Imported SLEAP-family models vs their reference implementations, in one run.

Usage (in a side environment with sleap-nn, never a dependency of rtpose; the one
../shared/tools/peer_latency.sh builds):

    $PEER_ENV/bin/python bench/sleap_import_parity.py [--keras-python TF_ENV/bin/python] [--latency] [--int8]

1. Peer (sleap-nn 0.3.5 top-down ID model, ../shared/peer): rtpose's fp32 export, run by
   ONNX Runtime through rtpose's engine, against sleap-nn's own predictor (its torch
   layers, same uint8 frames, peak threshold 0.2, integral refinement, 5x5 patches,
   max 2 instances) on frames START-END of the fly clip: instances both find, points
   (max distance where both report the node), missing-node agreement, identities.
   For reference, sleap-nn's own ONNX export against its own predictor, by the same
   measure (that export finds peaks without sub-pixel refinement).
2. SLEAP 1.x (../shared/models_sleap_legacy): confidence maps and class probabilities of
   rtpose's modules against sleap-nn's legacy loader (sleap_nn.legacy_models) and, with
   --keras-python (an environment with tensorflow-cpu and tf-keras), against Keras
   itself, on the minimal frame, crops of its labelled instances and crops of labelled
   close-courtship fly frames.
3. --latency: batch-1 CPU latency: rtpose's ort-cpu engine (uint8 frame -> identified
   Poses, host-side matching included) vs sleap-nn's own ONNX export of the same weights
   (``sleap-nn export --format onnx --max-instances 2``; session.run only, as
   ../shared/tools/sleapnn_onnx_latency.py times it). Each runner times the frames alone
   in a fresh process, runners alternating, twice (see ``latency``). --int8 adds rtpose's
   int8 export (``--int8 --video``: calibrated on 50 frames of 0-1199).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
PEER = [SHARED / "peer" / "centroid", SHARED / "peer" / "centered_instance_id"]
LEGACY = SHARED / "models_sleap_legacy"
VIDEO = SHARED / "data" / "flies13" / "clip.mp4"


def read_frames(indices) -> list[np.ndarray]:
    from rtpose.data.video import VideoReader

    with VideoReader(VIDEO) as reader:
        return [reader.read(int(i)) for i in indices]


def export_ours(out: Path, int8: bool = False) -> Path:
    """The peer model exported as a user would: ``rtpose export ... --video clip.mp4``
    (with ``--int8``: calibrated on 50 frames of the first 80% of the clip, checked and
    referenced on frames of the rest)."""
    from rtpose.cli import main as cli

    code = cli(["export", *map(str, PEER), "-o", str(out), "--max-instances", "2", "--video", str(VIDEO)]
               + (["--int8"] if int8 else []))
    if code != 0:  # the reason is on stderr (an int8 graph that fails its checks is refused)
        raise RuntimeError(f"rtpose export{' --int8' if int8 else ''} refused the peer model (exit {code})")
    return out


def _pair(theirs: np.ndarray, ours: np.ndarray) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    d = np.linalg.norm(theirs[:, None] - ours[None], axis=-1)
    cost = np.where(np.isfinite(d).any(-1), np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=-1), 1e6)
    rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=1e6))
    return list(zip(rows, cols))


def _summary(dists: list[np.ndarray], **counts) -> dict:
    d = np.concatenate(dists) if dists else np.zeros(0)
    per_instance = np.array([x.max() if x.size else 0.0 for x in dists])
    return {**counts, "points_compared": int(d.size),
            "instances_within_0.1px": int((per_instance <= 0.1).sum()), "instances_compared": len(per_instance),
            "max_px": float(d.max()) if d.size else None, "p99_px": float(np.percentile(d, 99)) if d.size else None,
            "median_px": float(np.median(d)) if d.size else None}


def peer_parity(export_dir: Path, frames: list[np.ndarray], sleap_nn_onnx: Path | None = None,
                precision: str = "fp32") -> dict:
    """rtpose's export (and sleap-nn's own ONNX export, for reference) against sleap-nn's
    predictor. Instances whose points differ by more than 0.1 px are explained where
    possible: a centroid within 0.01 px of a half pixel, where the crop origin
    ``floor(c + 0.5)`` flips with any last-digit difference, or a centroid more than
    1 px away (another local maximum chosen)."""
    import onnxruntime as ort
    import torch
    from sleap_nn.inference.predictor import Predictor

    from rtpose.engine.base import load_engine
    from rtpose.export.importers import import_topdown

    pred = Predictor.from_model_paths([str(d) for d in PEER], device="cpu", batch_size=1, max_instances=2,
                                      peak_threshold=0.2, integral_refinement="integral", integral_patch_size=5)
    engine = load_engine(export_dir, "ort-cpu", precision=precision)
    pipeline, _ = import_topdown(PEER, max_instances=2)
    theirs_onnx = ort.InferenceSession(str(sleap_nn_onnx), providers=["CPUExecutionProvider"]) if sleap_nn_onnx else None
    same_count = pairs = nan_agree = nodes = id_agree = near_half = other_peak = 0
    dists, onnx_dists = [], []
    for frame in frames:
        out = pred.layer.predict(frame[None, None])
        keep = ~np.isnan(out.pred_centroids[0].numpy()).any(-1)
        theirs = out.pred_keypoints[0].numpy()[keep]
        their_centroids = out.pred_centroids[0].numpy()[keep]
        their_ids = out.pred_class_inds[0][keep][:, 0].numpy() if out.pred_class_inds is not None else None
        poses = engine.infer(frame)
        with torch.no_grad():
            _, our_centroids = pipeline.centroids(torch.from_numpy(frame)[None, None].float())
        our_centroids = our_centroids[0].numpy()
        same_count += len(theirs) == len(poses.points)
        if theirs_onnx is not None:
            o = dict(zip([x.name for x in theirs_onnx.get_outputs()], theirs_onnx.run(None, {"image": frame[None, None]})))
            pk = o["peaks"][0][o["instance_valid"][0].astype(bool)]
            for r, c in _pair(theirs, pk) if len(pk) and len(theirs) else []:
                both = np.isfinite(theirs[r][:, 0]) & np.isfinite(pk[c][:, 0])
                onnx_dists.append(np.linalg.norm(theirs[r][both] - pk[c][both], axis=-1))
        if not len(theirs) or not len(poses.points):
            continue
        for r, c in _pair(theirs, poses.points):
            pairs += 1
            a, b = theirs[r], poses.points[c]
            nan_agree += int((np.isnan(a[:, 0]) == np.isnan(b[:, 0])).sum())
            nodes += len(a)
            both = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
            dists.append(np.linalg.norm(a[both] - b[both], axis=-1))
            if dists[-1].size and dists[-1].max() > 0.1:
                cd = np.linalg.norm(our_centroids - their_centroids[r], axis=-1).min()
                frac = np.abs((their_centroids[r] % 1.0) - 0.5).min()
                near_half += int(cd <= 1.0 and frac < 0.01)
                other_peak += int(cd > 1.0)
            if their_ids is not None:
                id_agree += int(their_ids[r] == poses.identity[c])
    result = _summary(dists, frames=len(frames), frames_same_instance_count=same_count, instances_paired=pairs,
                      missing_node_agreement=nan_agree / max(nodes, 1), identity_agreement=id_agree / max(pairs, 1),
                      beyond_0_1px_centroid_at_half_pixel=near_half, beyond_0_1px_other_centroid_peak=other_peak)
    if theirs_onnx is not None:
        result["sleap_nn_own_onnx_vs_its_predictor"] = _summary(onnx_dists)
    return result


def sleap_nn_onnx_export(out: Path) -> Path:
    subprocess.run([str(Path(sys.executable).parent / "sleap-nn"), "export", *map(str, PEER), "-o", str(out),
                    "--format", "onnx", "--max-instances", "2"], check=True, capture_output=True)
    return out / "model.onnx"


def legacy_inputs() -> dict[str, np.ndarray]:
    """Real inputs for each legacy model: the minimal frame, 96 px crops on its labelled
    instances, 128 px crops on labelled thoraxes of close-courtship fly frames."""
    import sleap_io as sio

    from rtpose.data.video import VideoReader
    from rtpose.paths import data_dir

    def crop(img, c, size):
        x0, y0 = int(np.floor(c[0] + 0.5)) - size // 2, int(np.floor(c[1] + 0.5)) - size // 2
        p = np.pad(img, size)
        return p[y0 + size:y0 + 2 * size, x0 + size:x0 + 2 * size]

    minimal = data_dir() / "minimal" / "minimal_instance.pkg.slp"
    lf = sio.load_slp(str(minimal)).labeled_frames[0]
    with VideoReader(minimal) as reader:
        img = reader.read(lf.frame_idx)
    crops = [crop(img, np.nanmean(inst.numpy(), axis=0), 96) for inst in lf.instances]
    close = sio.load_slp(str(data_dir() / "flies13" / "clip.close.slp"))
    fly = []
    with VideoReader(VIDEO) as reader:
        for lf2 in close.labeled_frames[::10]:
            frame = reader.read(lf2.frame_idx)
            for inst in lf2.instances:
                thorax = inst.numpy()[1]
                if np.isfinite(thorax).all():
                    fly.append(crop(frame, thorax, 128))
    return {"minimal_instance.UNet.centroid": img[None, None],
            "minimal_instance.UNet.centered_instance": np.stack(crops)[:, None],
            "min_tracks_2node.UNet.topdown_multiclass": np.stack(fly)[:, None]}


KERAS_SCRIPT = """
import sys, numpy as np, tf_keras as keras
d = np.load(sys.argv[1]); out = {}
for name in d.files:
    m = keras.models.load_model(sys.argv[3] + "/" + name + "/best_model.h5", compile=False)
    ys = m.predict(d[name].transpose(0, 2, 3, 1).astype(np.float32) / 255.0, verbose=0)
    ys = ys if isinstance(ys, list) else [ys]
    out[name + "/confmaps"] = ys[0].transpose(0, 3, 1, 2)
    if len(ys) > 1 and ys[1].ndim == 2:
        out[name + "/classes"] = ys[1]
np.savez(sys.argv[2], **out)
"""


def legacy_parity(keras_python: str | None) -> dict:
    import torch
    from sleap_nn.legacy_models import load_legacy_model

    from rtpose.export.importers import read_net
    from rtpose.export.importers.common import load_layers

    inputs = legacy_inputs()
    keras = None
    if keras_python:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(f"{tmp}/in.npz", **inputs)
            subprocess.run([keras_python, "-c", KERAS_SCRIPT, f"{tmp}/in.npz", f"{tmp}/out.npz", str(LEGACY)],
                           check=True, capture_output=True)
            keras = dict(np.load(f"{tmp}/out.npz"))
    report = {}
    for name, x in inputs.items():
        imported = read_net(LEGACY / name)
        net = imported.arch.build()
        load_layers(net, imported)
        net.eval()
        ref = load_legacy_model(str(LEGACY / name))
        ref.eval()
        xt = torch.from_numpy(x).float() / 255.0
        with torch.no_grad():
            ours = net(xt)
            theirs = ref(xt)
        cm = (ours[0] if isinstance(ours, tuple) else ours).numpy()
        their_cm = next(v for k, v in theirs.items() if "Confmaps" in k).numpy()
        row = {"input": list(x.shape), "upsampling": imported.arch.unet.upsampling,
               "confmaps_vs_sleap_nn_legacy": float(np.abs(cm - their_cm).max())}
        probs = None
        if isinstance(ours, tuple) and ours[1] is not None:
            probs = torch.softmax(ours[1], -1).numpy()
            row["class_probs_vs_sleap_nn_legacy"] = float(np.abs(probs - theirs["ClassVectorsHead"].numpy()).max())
        if keras is not None:
            row["confmaps_vs_keras"] = float(np.abs(cm - keras[name + "/confmaps"]).max())
            row["sleap_nn_legacy_confmaps_vs_keras"] = float(np.abs(their_cm - keras[name + "/confmaps"]).max())
            if probs is not None:
                row["class_probs_vs_keras"] = float(np.abs(probs - keras[name + "/classes"]).max())
        report[name] = row
    return report


ROUNDS = 2  # each runner times all frames in its own process, ROUNDS times, alternating


def _time_one(runner: str, path: str, start: int, end: int) -> list[float]:
    """Batch-1 ms per frame of one runner, alone in this process (after 5 warm-up frames)."""
    frames = read_frames(range(start, end))
    if runner == "sleap-nn":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = np.uint8 if "uint8" in inp.type else np.float32
        run = lambda f: sess.run(None, {inp.name: f[None, None].astype(dtype)})  # noqa: E731
    else:
        from rtpose.engine.base import load_engine

        run = load_engine(path, "ort-cpu", precision=runner).infer
    for f in frames[:5]:
        run(f)
    times = []
    for f in frames:
        t = time.perf_counter()
        run(f)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def latency(export_dirs: dict[str, Path], sleap_nn_onnx: Path, start: int, end: int) -> dict:
    """Each runner alone in a fresh process, runners alternating, ROUNDS rounds.

    Not frame by frame in one process: ONNX Runtime's worker threads spin for a while
    after each run, and on a small CPU a session that runs while another session's
    threads spin is slowed by them (1.7x on this 2-core machine), so an interleaved loop
    measures that contention rather than either graph. A live loop runs one session.
    """
    runners = {"sleap-nn ONNX export": ("sleap-nn", str(sleap_nn_onnx))}
    runners.update({name: ("int8" if "int8" in name else "fp32", str(d)) for name, d in export_dirs.items()})
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(ROUNDS):
        for name, (runner, path) in runners.items():
            out = subprocess.run([sys.executable, __file__, "--time-one", runner, path, "--start", str(start),
                                  "--end", str(end)], check=True, capture_output=True, text=True).stdout
            times[name] += json.loads(out.strip().splitlines()[-1])
    out = {k: {"p50_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99)), "n": len(v)}
           for k, v in times.items()}
    base = out["sleap-nn ONNX export"]["p50_ms"]
    for k in export_dirs:
        out[k]["p50_vs_sleap_nn_onnx"] = out[k]["p50_ms"] / base
    return out


def main() -> int:
    from rtpose.machine import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, default=1200)
    ap.add_argument("--end", type=int, default=1300, help="exclusive")
    ap.add_argument("--keras-python", help="python of an environment with tensorflow-cpu and tf-keras")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--int8", action="store_true", help="with --latency: also rtpose's int8 export")
    ap.add_argument("--no-parity", action="store_true", help="skip sections 1 and 2 (with --latency: timing only)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--time-one", nargs=2, metavar=("RUNNER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_one:
        print(json.dumps(_time_one(*args.time_one, args.start, args.end)))
        return 0
    import os
    import re

    flags = sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_int8)\b",
                                  Path("/proc/cpuinfo").read_text())))
    figures: dict = {"cpu": cpu_name(), "cpu_flags": flags, "cores": os.cpu_count()}
    frames = read_frames(range(args.start, args.end))
    with tempfile.TemporaryDirectory() as tmp:
        ours = export_ours(Path(tmp) / "fp32")
        theirs = sleap_nn_onnx_export(Path(tmp) / "sleap_nn_onnx")
        if not args.no_parity:
            figures["peer_parity_fp32"] = peer_parity(ours, frames, theirs)
            print(json.dumps({"peer_parity_fp32": figures["peer_parity_fp32"]}, indent=1), flush=True)
            figures["legacy"] = legacy_parity(args.keras_python)
            print(json.dumps({"legacy": figures["legacy"]}, indent=1), flush=True)
        if args.latency:
            dirs = {"rtpose ort-cpu fp32": ours}
            if args.int8:
                try:
                    dirs["rtpose ort-cpu int8"] = export_ours(Path(tmp) / "int8", int8=True)
                except RuntimeError as refused:
                    figures["int8_refused"] = str(refused)
                    print(f"int8: {refused}; timing fp32 only", flush=True)
            if "rtpose ort-cpu int8" in dirs:
                from rtpose.export.spec import ExportSpec

                figures["int8_check"] = ExportSpec.load(dirs["rtpose ort-cpu int8"]).extra.get("quantization")
                print(json.dumps({"int8_check": figures["int8_check"]}, indent=1), flush=True)
                if not args.no_parity:
                    figures["peer_parity_int8"] = peer_parity(dirs["rtpose ort-cpu int8"], frames, precision="int8")
                    print(json.dumps({"peer_parity_int8": figures["peer_parity_int8"]}, indent=1), flush=True)
            figures["latency"] = latency(dirs, theirs, args.start, args.end)
            print(json.dumps({"latency": figures["latency"]}, indent=1), flush=True)
    print(f"CPU: {figures['cpu']} ({', '.join(flags)}), {figures['cores']} cores; frames {args.start}-{args.end - 1}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
