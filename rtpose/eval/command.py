"""``rtpose eval``: score predictions against labels, print a table, optionally write JSON.

Help text (README-ready):

    rtpose eval -g GT.slp -p PRED.slp [--px-per-mm F] [--pck-px 5] [--frames A-B]
                [--anchor-part NODE] [--animal-size PX] [--unpredicted-frames skip|missed] [--json OUT [--overwrite]]

    Frames are paired by video and frame index. A labeled frame with a predicted frame
    is scored (an empty predicted frame: all its instances missed). Labeled frames the
    predictions lack are left out, as sleap-nn does, or with --unpredicted-frames
    missed count as missed; predicted frames without labels are not scored. Both are
    counted and reported.
    Predictions are matched to labels greedily per frame by OKS (sigma 0.025 for every
    node, scale = area of the labeled instance's bounding box), highest instance score
    first. mAP/mAR: PoseTrack/VOC average precision/recall over OKS thresholds
    0.50:0.05:0.95 with 101 recall points, as in the SLEAP paper and sleap-nn; as there,
    a prediction that matched no labeled instance lowers no precision (it is reported
    as an extra prediction). A predictions file with no PredictedInstance (e.g. the
    labels themselves) is scored as predictions of score 1.
    mOKS: mean OKS of matched pairs. Errors: node distances of matched pairs (px, and mm
    with --px-per-mm). PCK: share of labeled nodes within --pck-px pixels.
    Identity accuracy: share of matched labeled instances whose predicted track name is
    their own (pairs where the prediction lies closer, by OKS, to another labeled animal
    are left out: a duplicate detection displaced it). Identity switches: per animal,
    along runs of consecutive labeled frames, the times the track name of its matched
    prediction changes; unmatched frames carry the last name on. A swap of two animals
    for a stretch is 4 switches (2 per animal); switch events counts the frames where
    any animal's name changed (2 for that stretch).
    The main figures are also split by the distance from each labeled animal's anchor to
    the nearest other's, in animal sizes (rtpose.data.proximity). Anchor part and size
    unit: --anchor-part and --animal-size where given, else those the rtpose model that
    made the predictions recorded (its training report's: the predictions' provenance,
    or the export's rtpose.json), else the box centre and the scored labels' median
    size; the line under the table says which were used and where from.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from rtpose.data.video import parse_frame_range
from rtpose.errors import RtposeError
from rtpose.eval.evaluate import evaluate
from rtpose.paths import claim_report_file, make_parent
from rtpose import jsonsafe

# --frames on labels: the video length is not needed to pick frames by index.
_NO_UPPER_BOUND = sys.maxsize


def main(args: argparse.Namespace) -> int:
    json_out = claim_report_file(args.json_out, args.overwrite, "--json", [args.ground_truth, args.predictions]) if args.json_out else None
    if args.px_per_mm is not None and not args.px_per_mm > 0:
        raise RtposeError(f"--px-per-mm must be positive, got {args.px_per_mm}")
    if not args.pck_px > 0:
        raise RtposeError(f"--pck-px must be positive, got {args.pck_px}")
    frames = _frame_filter(args.frames) if args.frames else None
    if args.animal_size is not None and not args.animal_size > 0:
        raise RtposeError(f"--animal-size must be positive, got {args.animal_size}")
    result = evaluate(args.ground_truth, args.predictions, frames=frames, px_per_mm=args.px_per_mm,
                      pck_px=args.pck_px, unpredicted=args.unpredicted_frames, anchor_part=args.anchor_part,
                      animal_size_px=args.animal_size)
    for note in result["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    console = Console(soft_wrap=True)
    console.print(result_table(result))
    console.print(proximity_table(result))
    if json_out is not None:
        out = json_out
        try:
            make_parent(out).write_text(jsonsafe.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise RtposeError(f"{out}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return 0


def _frame_filter(text: str) -> range:
    try:
        return parse_frame_range(text, _NO_UPPER_BOUND)  # its words, as predict and bench say them
    except RtposeError as exc:
        raise RtposeError(f"--frames: {exc}") from None


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def result_table(r: dict[str, Any]) -> Table:
    table = Table(title=f"{r['predictions']} vs {r['ground_truth']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    unpredicted = "left out" if r["unpredicted_frames"] == "skip" else "missed"
    rows = [
        ("frames scored", _num(r["n_frames"])),
        ("labeled frames not predicted", f"{r['n_frames_gt_only']} ({unpredicted})"),
        ("predicted frames not labeled", f"{r['n_frames_pred_only']} (left out)"),
        ("instances labeled / predicted", f"{r['n_gt']} / {r['n_pred']}"),
        ("matched / missed / extra predictions", f"{r['n_matched']} / {r['n_missed']} / {r['n_unmatched_pred']}"),
        ("OKS mAP (0.50:0.95)", _num(r["map"], 4)),
        ("OKS mAR (0.50:0.95)", _num(r["mar"], 4)),
        ("AP@0.50 / AP@0.75", f"{_num(r['ap']['0.50'], 4)} / {_num(r['ap']['0.75'], 4)}"),
        ("mOKS (matched pairs)", _num(r["moks"], 4)),
        ("instances found (OKS > 0.5)", f"{r['n_found']} / {r['n_gt']} ({_pct(r['found'])})"),
    ]
    if r.get("n_nodes_labelled"):
        rows.append(("labeled nodes not predicted (matched pairs; errors are over the rest)",
                     f"{r['n_nodes_not_predicted']} / {r['n_nodes_labelled']} "
                     f"({_pct(r['n_nodes_not_predicted'] / r['n_nodes_labelled'])})"))
    units = [("px", r["dist_px"], 2)] + ([("mm", r["dist_mm"], 3)] if "dist_mm" in r else [])
    for unit, d, digits in units:
        rows.append((f"error {unit} p50 / p95 / p99", " / ".join(_num(d[k], digits) for k in ("p50", "p95", "p99"))))
        rows.append((f"error {unit} p75 / p90 / mean", " / ".join(_num(d[k], digits) for k in ("p75", "p90", "mean"))))
    rows += [
        (f"PCK@{r['pck_px']:g}px", _num(r["pck"], 4)),
        (f"identity accuracy, matched pairs ({r['n_id_scored']})", _num(r["id_accuracy"], 4)),
        (f"identity accuracy, found instances ({r['n_id_found']})", _num(r["id_accuracy_found"], 4)),
        ("identity switches (per animal)", _num(r["id_switches"])),
        ("  switch events (frames)", _num(r["id_switch_events"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def proximity_table(r: dict[str, Any]) -> Table:
    """The main figures per inter-animal distance bin (see rtpose.data.proximity)."""
    prox = r["proximity"]
    anchor = prox["anchor_part"] or "box centre"
    size = prox["animal_size_px"]
    bounds = list(prox["bins"].items())
    table = Table(title=f"by {anchor}-to-{anchor} distance to the nearest other animal "
                        f"(unit: animal size {_num(size, 1)} px, a median sqrt(box area))", title_justify="left")
    if prox.get("described"):
        table.caption = f"distance split: {prox['described']}"
        table.caption_justify = "left"
    for col in ("animals", "instances", "found", "mAP", "err p50/p95 px", "identity"):
        table.add_column(col, justify="left" if col == "animals" else "right")
    for k, (name, lower) in enumerate(bounds):
        upper = bounds[k + 1][1] if k + 1 < len(bounds) else None
        span = f"<{upper * size:.0f}px" if lower == 0 else (f">={lower * size:.0f}px" if upper is None
                                                           else f"{lower * size:.0f}-{upper * size:.0f}px")
        b = r["by_proximity"][name]
        d = b["dist_px"]
        table.add_row(f"{name} {span}", str(b["n_gt"]), _pct(b["found"]), _num(b["map"], 3),
                      f"{_num(d.get('p50'), 1)}/{_num(d.get('p95'), 1)}", _pct(b["id_accuracy"]))
    return table
