"""The short report at the end of ``rtpose train``: how good, how fast, what next.

The validation block is scored the way a user would score it: the model is exported
(fp32, to a temporary directory), ``rtpose predict`` runs it with ONNX Runtime on the
validation frames, and ``rtpose eval``'s scoring compares with the labels. The latency
is ONNX Runtime's, batch 1, on this CPU, timed on the same frames.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rtpose.errors import RtposeError
from rtpose import jsonsafe
from rtpose.paths import shell_path

REPORT_FILE = "report.json"


def validation_report(model_dir: Path, n_timed: int = 30) -> dict[str, Any]:
    """Scores of the exported model on the model's validation frames, and its latency.

    Returns a dict with ``map``, ``dist_px`` percentiles, ``id_accuracy``,
    ``latency_ms`` (p50/p90 of ONNX Runtime batch-1 inference on this CPU) and
    ``frames``; ``note`` says why a figure is missing.
    """
    from rtpose.data.labels import load_labels, user_frames
    from rtpose.data.samples import split_frames
    from rtpose.data.video import describe_span
    from rtpose.engine.base import load_engine
    from rtpose.engine.predict import predict
    from rtpose.eval.evaluate import evaluate
    from rtpose.export.command import _check_frame
    from rtpose.export.onnx_export import export

    info = json.loads((model_dir / "model.json").read_text())
    data = yaml.safe_load((model_dir / "config.yaml").read_text())["data"]
    labels_path = Path(info["labels"])
    labels = load_labels(labels_path, open_videos=False)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "export"
        export(model_dir, export_dir, check_frame=_check_frame(model_dir))
        frames = user_frames(labels, labels_path)
        _, val = split_frames(frames, data.get("train_frames"), data.get("val_frames"), data.get("val_fraction"), 0)
        if not val:
            out["note"] = "no validation frames: nothing scored"
            val = frames[-1:]
        elif len(labels.videos) > 1:
            out["note"] = "labels of several videos: score each with rtpose predict / rtpose eval"
        else:
            idx = sorted(f.frame_idx for f in val)
            with contextlib.redirect_stdout(io.StringIO()):  # predict's own summary line
                pred = predict(export_dir, labels_path, frames=f"{idx[0]}-{idx[-1]}", output=Path(tmp) / "val.slp",
                               only_labeled=True, progress=False)
            r = evaluate(labels_path, pred, frames=set(idx))
            empty = [lf.frame_idx for lf in labels.labeled_frames if not lf.user_instances]
            others = [Path(f).name for f in info.get("label_files", [])[1:]]
            if others:  # the pooled validation frames of every file are in validation_report.json
                out["other_labels"] = (f"{', '.join(others)}: {'its' if len(others) == 1 else 'their'} validation "
                                       "frames are scored, with these, in the whole-pipeline table above "
                                       "(validation_report.json)")
            out.update({"labels_file": labels_path.name, "frames": len(idx), "frame_range": f"{idx[0]}-{idx[-1]}",
                        "frames_described": describe_span(idx, empty, "not validation frames"), "map": r["map"],
                        "dist_px": r["dist_px"], "id_accuracy": r["id_accuracy"], "n_gt": r["n_gt"],
                        "n_matched": r["n_matched"], "n_found": r["n_found"]})
        engine = load_engine(export_dir, "ort-cpu")
        from rtpose.data.video import VideoReader

        with VideoReader(val[0].video_path) as reader:
            images = [reader.read(f.frame_idx) for f in val[:n_timed]]
        engine.warmup(3)
        times = []
        for k in range(max(n_timed, len(images))):
            t = time.perf_counter()
            engine.infer(images[k % len(images)])
            times.append((time.perf_counter() - t) * 1000)
        out["latency_ms"] = {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
                             "engine": f"{engine.name} fp32 on {engine.device}"}
    return out


# below this share of validation instances found (OKS > 0.5), or below this OKS mAP, the
# report warns. Runs of the README's commands find 80-100% (mice 16-19 of 20, flies 100%)
# at mAP 0.36-0.47 (mice) and 0.87-0.92 (flies); a 5-minute mice run found 35%, and a
# 4-minute one found 60% (12/20) at mAP 0.095 with node error p90 47 px.
WEAK_FOUND = 0.6
WEAK_MAP = 0.2


def weak_warning(report: dict[str, Any], minutes: float, more_time: str = "--minutes") -> str | None:
    """The report's warning when the validation scores say the model is not usable yet.

    Args:
        report: :func:`validation_report`'s dict (``n_gt``, ``n_found``, ``map``).
        minutes: the run's training time (its budget, or its wall time where longer).
        more_time: how the user asks for a longer run (``--minutes``, or a config's
            ``budget_minutes``).

    Returns:
        One sentence, or None when the run is not weak or nothing was scored.
    """
    n_gt = report.get("n_gt")
    if "map" not in report or not n_gt:
        return None
    found = report.get("n_found", n_gt)
    if found == 0:
        return ("no validation instance was found (OKS > 0.5): this model is not usable yet; train longer "
                f"({more_time}) or check the labels")
    weak = []
    if found < WEAK_FOUND * n_gt:
        weak.append(f"only {found} of {n_gt} validation instances found (OKS > 0.5)")
    if report["map"] < WEAK_MAP:
        weak.append(f"OKS mAP {report['map']:.3f} (below {WEAK_MAP})")
    if not weak:
        return None
    return (f"{' and '.join(weak)} after {minutes:.1f} min: train longer ({more_time}) or label more frames "
            "before relying on it")


# a network stopped by its time budget whose best epoch is among its last this many epochs
# was still improving (it had reached a new best validation loss lately) when the budget ran out
STILL_IMPROVING_EPOCHS = 3


def budget_warning(info: dict[str, Any], longer: str) -> str | None:
    """The report's warning when the time budget stopped a network that was still improving.

    Args:
        info: the run's ``model.json`` (per network: ``epochs``, ``best_epoch`` (0-based),
            ``stopped``, ``wall_minutes``).
        longer: how the user asks for a longer budget, e.g. ``"--minutes 12"``.

    Returns:
        One sentence, or None when no network was stopped by its budget within
        :data:`STILL_IMPROVING_EPOCHS` epochs of its best one.
    """
    improving = []
    for net in ("centroid", "instance"):
        n = info.get(net) or {}
        if str(n.get("stopped", "")).startswith("time budget") and \
                n.get("epochs", 0) - n.get("best_epoch", -1) <= STILL_IMPROVING_EPOCHS:
            improving.append(f"the {net} network (best epoch {n['best_epoch']}, last epoch {n['epochs'] - 1})")
    if not improving:
        return None
    each = "each" if len(improving) > 1 else "it"
    return (f"the time budget stopped {' and '.join(improving)} within {STILL_IMPROVING_EPOCHS} epochs of "
            f"{'its' if len(improving) == 1 else 'their'} best validation loss, so {each} was still improving: "
            f"a longer budget would likely do better (e.g. {longer})")


def print_report(model_dir: Path, report: dict[str, Any], cpu: str, console, config_run: bool = False) -> None:
    """Print the report at the end of ``rtpose train``: its advice in the flags of
    ``rtpose train LABELS.slp`` (``--minutes``), or with ``config_run`` in a config's
    settings (``budget_minutes``, ``optim.max_minutes``)."""
    info = json.loads((model_dir / "model.json").read_text())
    timing = info.get("time") or {}
    if timing:
        lines = [f"[bold]training report[/] ({model_dir}, on {cpu})"]
    else:  # a model.json from before the time split
        lines = [f"[bold]training report[/] ({model_dir}, {info['wall_minutes']:.1f} min on {cpu})"]
    for net in ("centroid", "instance"):
        n = info[net]
        lines.append(f"  {net}: {n['epochs']} epochs in {n['wall_minutes']:.1f} min, best epoch {n['best_epoch']}, "
                     f"stopped by {n['stopped']}")
    if timing:
        lines.append(f"  {time_line(timing, report.get('time') or {})}")
    if "map" in report:
        d = report["dist_px"]
        ident = f", identity {report['id_accuracy']:.1%}" if _defined(report.get("id_accuracy")) \
            and info["class_names"] else ""
        found = report.get("n_found", report["n_matched"])
        span = report.get("frames_described") or f"{report['frame_range']} ({report['frames']} frames)"
        if report.get("other_labels"):  # several labels files: say which one this block is
            span = f"of {report['labels_file']}: {span}"
        lines.append(f"  validation frames {span}: "
                     f"{found}/{report['n_gt']} instances found (OKS > 0.5), {report['n_matched']} matched; "
                     f"OKS mAP {report['map']:.3f}, "
                     f"node error {_node_error(d)}{ident}")
    # the run's budget (config.yaml), or its wall time (every session) where that was longer
    config = yaml.safe_load((model_dir / "config.yaml").read_text()) if (model_dir / "config.yaml").exists() else {}
    spent = timing.get("minutes_asked") or max(float((config or {}).get("budget_minutes") or 0), info["wall_minutes"])
    twice = max(math.ceil(2 * spent), 1)
    if report.get("n_gt") and report.get("n_found") == 0 and not config_run:
        from rtpose.train.auto import DEFAULT_MINUTES

        twice = max(twice, math.ceil(DEFAULT_MINUTES))  # nothing found: twice a short run is still short
    warning = weak_warning(report, spent, "budget_minutes" if config_run else "--minutes")
    if warning:
        lines.append(f"  [yellow]warning:[/] {warning}")
    longer = (f"budget_minutes: {twice}, or that network's optim.max_minutes, and another -o" if config_run
              else f"--minutes {twice} and another -o")
    budget = budget_warning(info, longer)
    if budget:
        lines.append(f"  [yellow]warning:[/] {budget}")
    if report.get("other_labels"):
        lines.append(f"  {report['other_labels']}")
    if report.get("note"):
        lines.append(f"  {report['note']}")
    lat = report.get("latency_ms")
    if lat:
        lines.append(f"  latency {lat['p50']:.1f} ms p50, {lat['p90']:.1f} ms p90 per frame ({lat['engine']}, "
                     f"batch 1): inference alone keeps up with a camera of up to {1000 / lat['p90']:.0f} FPS "
                     "here (1000 / p90)")
    if warning or budget:  # exporting it is not the next step
        how = "a larger budget_minutes in the config" if config_run else "the same command with a larger --minutes"
        lines.append(f"  next: train longer, e.g. {how} and another -o (this "
                     f"run: {spent:.1f} min); then rtpose export {shell_path(model_dir)} -o {shell_path(f'models/{model_dir.name}')}")
    else:
        lines.append(f"  next: rtpose export {shell_path(model_dir)} -o {shell_path(f'models/{model_dir.name}')}")
    for line in lines:
        console.print(line, highlight=False)


def _defined(value: Any) -> bool:
    """Whether a report figure is a number: undefined ones are None (read back from JSON) or NaN."""
    return value is not None and value == value


def _node_error(dist_px: dict[str, Any]) -> str:
    """``p50 X px, p90 Y px, p95 Z px``, each ``-`` where undefined (no node matched), as the table shows it."""
    quantiles = ("p50", "p90", "p95")
    text = ", ".join(f"{q} {dist_px[q]:.1f} px" if _defined(dist_px.get(q)) else f"{q} -" for q in quantiles)
    return text if any(_defined(dist_px.get(q)) for q in quantiles) else f"{text} (no node matched)"


def time_line(timing: dict[str, Any], report_time: dict[str, Any]) -> str:
    """Where the run's time went, in one line (minutes, measured).

    Args:
        timing: ``model.json``'s ``time``: ``minutes_asked`` (``--minutes``, or None),
            ``deriving``, ``setup``, ``training`` (this session), ``earlier_sessions``
            (a resumed run's training before the stop).
        report_time: ``report.json``'s ``time``: ``report_minutes`` (all after training:
            the validation tables and this report), ``total_minutes`` (may be empty).

    Returns:
        e.g. ``time: 0.81 min training of --minutes 1.5; the rest: 0.35 deriving, 0.09
        setup, 0.26 validation and this report; 1.51 min in all``.
    """
    asked = timing.get("minutes_asked")
    head = f"time: {timing['training']:.2f} min training" + (f" of --minutes {asked:g}" if asked else "")
    if timing.get("earlier_sessions"):  # a resumed run: its networks' time before the stop
        head += f" (and {timing['earlier_sessions']:.2f} min before the resume)"
    rest = ([f"{timing['deriving']:.2f} deriving"] if asked else []) + [f"{timing['setup']:.2f} setup"]
    if "report_minutes" in report_time:
        rest.append(f"{report_time['report_minutes']:.2f} validation and this report")
    total = f"; {report_time['total_minutes']:.2f} min in all" if "total_minutes" in report_time else ""
    return f"{head}; the rest: {', '.join(rest)}{total}"


def write_report(model_dir: Path, report: dict[str, Any]) -> None:
    (model_dir / REPORT_FILE).write_text(jsonsafe.dumps(report, indent=2, default=float))


def safe_report(model_dir: Path) -> dict[str, Any]:
    """:func:`validation_report`, or a note saying why there is none (the model is kept)."""
    try:
        return validation_report(model_dir)
    except RtposeError as exc:
        return {"note": f"no validation report: {exc}"}
