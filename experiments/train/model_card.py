"""Write MODEL_CARD.md for an exported model: how it was made and how well it does.

Usage: python experiments/train/model_card.py MODEL_DIR EXPORT_DIR EVAL_JSON [--close EVAL_JSON]
       [--graph LABEL=EVAL_JSON ...] COMMAND...

EVAL_JSON scores what ``rtpose predict`` ran with its defaults on the validation frames;
``--close`` adds the same figures on held-out close-courtship frames (a column beside
them, and both split by inter-animal distance); each ``--graph`` adds a
row to the precision table (e.g. ``fp32=...``, ``int8=...``, or a run under an emulated
CPU). Everything in the card is read from files the commands wrote (model.json,
rtpose.json, the eval JSONs) or from this machine: nothing is typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rtpose.machine import cpu_flags, cpu_name


def _frames(ev: dict) -> str:
    span = ev.get("frame_range")
    return f"frames {span[0]}-{span[1]}" if span else f"{ev['n_frames']} frames"


def _rows(*evs: dict) -> list[str]:
    def row(name, fn):
        return f"| {name} | " + " | ".join(fn(e) for e in evs) + " |"

    rows = [
        row("OKS mAP", lambda e: f"{e['map']:.3f}"),
        row("OKS mAR", lambda e: f"{e['mar']:.3f}"),
        row("mOKS", lambda e: f"{e['moks']:.3f}"),
        row("instances found (OKS > 0.5)", lambda e: f"{e['n_found']} / {e['n_gt']}"),
        row("node error p50 / p95 (px)", lambda e: f"{e['dist_px']['p50']:.2f} / {e['dist_px']['p95']:.2f}"),
    ]
    if all(e.get("dist_mm") for e in evs):
        rows.append(row("node error p95 (mm)", lambda e: f"{e['dist_mm']['p95']:.3f}"))
    rows += [
        row("identity accuracy", lambda e: f"{e['id_accuracy']:.4f}"),
        row("identity switches", lambda e: str(e["id_switches"])),
        row("instances (labeled / predicted / matched)", lambda e: f"{e['n_gt']} / {e['n_pred']} / {e['n_matched']}"),
    ]
    return rows


def _proximity(*evs: dict) -> list[str]:
    """The figures by distance to the nearest other animal (rtpose eval's split)."""
    prox = evs[0]["proximity"]
    anchor, size = prox["anchor_part"] or "box centre", prox["animal_size_px"]
    bounds = list(prox["bins"].items())
    lines = [f"By {anchor}-to-{anchor} distance to the nearest other animal, in animal sizes ({size:.0f} px, "
             "the median sqrt(box area) of the training labels):", "",
             "| animals | block | instances | found | OKS mAP | error p50 / p95 (px) | identity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, (name, lower) in enumerate(bounds):
        upper = bounds[k + 1][1] if k + 1 < len(bounds) else None
        span = f"< {upper * size:.0f} px" if lower == 0 else (f">= {lower * size:.0f} px" if upper is None
                                                             else f"{lower * size:.0f}-{upper * size:.0f} px")
        for block, e in zip(("validation", "close courtship"), evs):
            b = e["by_proximity"][name]
            if not b["n_gt"]:
                continue
            lines.append(f"| {name} ({span}) | {block} | {b['n_gt']} | {b['n_found']} | {b['map']:.3f} | "
                         f"{b['dist_px']['p50']:.2f} / {b['dist_px']['p95']:.2f} | {b['id_accuracy']:.4f} |")
    return lines


def main() -> int:
    model_dir, export_dir, eval_json = (Path(a) for a in sys.argv[1:4])
    rest, graphs, close_json = sys.argv[4:], [], None
    if len(rest) >= 2 and rest[0] == "--close":
        close_json, rest = Path(rest[1]), rest[2:]
    while len(rest) >= 2 and rest[0] == "--graph":
        label, path = rest[1].split("=", 1)
        graphs.append((label, json.loads(Path(path).read_text())))
        rest = rest[2:]
    commands = rest
    info = json.loads((model_dir / "model.json").read_text())
    ev = json.loads(eval_json.read_text())
    close = json.loads(close_json.read_text()) if close_json else None
    blocks = [ev] + ([close] if close else [])
    spec = json.loads((export_dir / "rtpose.json").read_text())
    c, i = info["centroid"], info["instance"]
    from rtpose.engine.base import load_engine

    chosen = load_engine(export_dir, "ort-cpu").graph + " graph"
    files = [f for f in ("model.onnx", "model.int8.onnx", "reference.npz") if (export_dir / f).exists()]
    sizes = ", ".join(f"`{f}` {(export_dir / f).stat().st_size / 1e6:.2f} MB" for f in files)
    lines = [
        "# flies13 top-down ID model (rtpose)",
        "",
        "Two flies (female, male), 13-node flies13 skeleton, 1024x1024 grayscale frames of the SLEAP",
        "paper's courtship chamber (30.3 px/mm). Trained by rtpose's own trainer from",
        f"{' and '.join('`' + Path(f).name + '`' for f in info.get('label_files', [info['labels']]))}; "
        f"exported as one ONNX graph per precision ({sizes}).",
        "",
        "## Reproduce",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Training",
        "",
        f"- frames: {info['train_frames']} for training, {info['val_frames']} held out for validation "
        "(see `config.yaml` in the training output for the exact selection)",
        f"- machine: {info.get('cpu_count')} CPU cores ({info.get('cpu') or cpu_name()}), "
        f"device {info['device']}, precision {info.get('precision', 'fp32')}, torch threads {info['torch_threads']}",
        f"- wall time: {info['wall_minutes']:.1f} min in all (centroid {c['wall_minutes']:.1f} min, "
        f"{c['epochs']} epochs, {c['stopped']}; centered-instance {i['wall_minutes']:.1f} min, "
        f"{i['epochs']} epochs, {i['stopped']})",
        f"- centroid: input scale {info['input_scale']}, output stride {info['centroid_output_stride']}; "
        f"centered instance: crop {info['crop_size']} px, output stride {info['instance_output_stride']}, "
        f"{info['refinement']} peak refinement",
        f"- config hash {info['config_hash']}",
        "",
        "## Accuracy on held-out frames (not trained on)",
        "",
        f"With `rtpose predict`'s defaults, which ran the {chosen} on this machine (see below). "
        f"Validation: {_frames(ev)} of `{Path(ev['ground_truth']).name}`"
        + (f"; close courtship: {_frames(close)} of `{Path(close['ground_truth']).name}` (the flies touch in most "
           "of them)." if close else "."),
        "",
        "| metric | validation |" + (" close courtship |" if close else ""),
        "| --- | --- |" + (" --- |" if close else ""),
        *_rows(*blocks),
        "",
        *(_proximity(*blocks) if "by_proximity" in ev else []),
        "",
        f"Export: {spec['frame_height']}x{spec['frame_width']} uint8 frames in; up to {spec['max_instances']} "
        f"instances; classes {', '.join(spec['class_names'])}.",
        "",
    ]
    if info.get("note"):
        lines += [info["note"], ""]
    quant = spec.get("extra", {}).get("quantization")
    if quant:
        shift = quant["shift_vs_fp32_px"]
        lines += [
            f"int8 graph (`--int8`): {quant['type']}; calibrated on {quant['calibration_frames']} training frames; "
            f"on held-out frames its points sit {shift['median']:.3f} px (median) / {shift['p95']:.2f} px (p95) "
            "from the fp32 graph's.",
            "",
        ]
    if graphs:
        lines += [
            "## Accuracy of each graph (validation frames; `rtpose predict --fp32` / `--int8`)",
            "",
            f"Measured on {cpu_name()} (flags by CPUID: {' '.join(cpu_flags()) or 'none'}) unless the row says otherwise.",
            "",
            "| graph | OKS mAP | mOKS | node error p50 / p95 (px) | identity accuracy |",
            "| --- | --- | --- | --- | --- |",
        ]
        for label, g in graphs:
            lines.append(f"| {label} | {g['map']:.3f} | {g['moks']:.3f} | {g['dist_px']['p50']:.2f} / "
                         f"{g['dist_px']['p95']:.2f} | {g['id_accuracy']:.4f} |")
        lines += ["", "The metrics in the first table are those of the graph `rtpose predict` chose with its "
                  "defaults on this machine. `rtpose check -m EXPORT_DIR` shows how each graph reproduces the "
                  "export's reference outputs on the machine it runs on.", ""]
    (export_dir / "MODEL_CARD.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
