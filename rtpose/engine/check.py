"""``rtpose check -m EXPORT_DIR [--engine NAME]``: does this export mean the same here?

Runs every graph of the export (ort-cpu: fp32 and, where exported, int8; another
engine: what that engine runs) on the export's reference frames and compares with the
fp32 outputs stored at export time (rtpose.engine.selfcheck). Prints the deviation of
each graph (median / max px, instance count and identity agreement), the graph ort-cpu
would choose here and why, and exits 1 when any graph is past its bounds (2 for a user
error such as an export without references).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from rtpose.engine.base import ENGINES, load_engine
from rtpose.engine.selfcheck import (FP32_BOUNDS, REDUCED_BOUNDS, CheckResult, describe_references, load_references,
                                     run_check)
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.machine import cpu_flags, describe
from rtpose.paths import claim_report_file, make_parent
from rtpose import jsonsafe


def check_graphs(export_dir: str | Path, engine_name: str = "ort-cpu") -> list[CheckResult]:
    """The self-check of each graph ``engine_name`` can run from ``export_dir``."""
    if engine_name not in ENGINES:
        raise RtposeError(f"unknown engine {engine_name!r}; choose one of {', '.join(ENGINES)}")
    spec = ExportSpec.load(export_dir)
    refs = load_references(export_dir, spec)
    if refs is None:
        raise RtposeError(f"{export_dir}: no reference outputs (reference.npz); export it again with this rtpose")
    module_name, cls_name = ENGINES[engine_name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    precisions = [p for p in ("fp32", "int8") if p in spec.graphs] if engine_name.startswith("ort-") else ["auto"]
    results = []
    for precision in precisions:
        engine = cls(export_dir, precision=precision)
        try:
            bounds = REDUCED_BOUNDS if engine.reduced_precision or engine.graph != "fp32" else FP32_BOUNDS
            results.append(run_check(engine.run_raw, refs, spec, bounds, engine.graph))
        finally:
            engine.close()
    return results


def main(args: argparse.Namespace) -> int:
    json_out = claim_report_file(args.json_out, args.overwrite, "--json", [args.model]) if args.json_out else None
    results = check_graphs(args.model, args.engine)
    spec = ExportSpec.load(args.model)
    m = describe()
    print(f"{args.model} with {args.engine} on {m['cpu']} ({' '.join(cpu_flags()) or 'no AVX2'}), "
          f"onnxruntime {m['onnxruntime']}")
    print(f"reference frames: {describe_references(spec)}")
    for r in results:
        status = "ok  " if r.passed else "FAIL"
        print(f"{status} {r.summary()} [{r.seconds * 1e3:.0f} ms]")
        for failure in r.failures:
            print(f"     {failure}")
    choice = None
    try:
        engine = load_engine(args.model, args.engine)
        choice = {"graph": engine.graph, "reason": engine.graph_reason.strip()}
        print(f"{args.engine} would run: {engine.describe_graph()}")
        engine.close()
    except RtposeError as exc:
        print(f"{args.engine} would refuse this export here: {exc}")
    ok = all(r.passed for r in results)
    if json_out is not None:
        make_parent(json_out).write_text(jsonsafe.dumps({"export": str(args.model), "engine": args.engine, "passed": ok,
                                                   "graphs": [r.to_dict() for r in results], "choice": choice,
                                                   "machine": m}, indent=2))
    if not ok:
        print("check failed: a graph of this export does not reproduce its references on this machine")
    return 0 if ok else 1
