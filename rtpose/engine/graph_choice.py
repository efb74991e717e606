"""ort-cpu's choice between an export's fp32 and int8 graphs, once per machine.

int8 is worth running only where it is both right and faster: right means it passes its
self-check against the fp32 references on this CPU (rtpose.engine.selfcheck), faster
means its batch-1 time on a reference frame is below ``FASTER`` times fp32's. Both are
timed in alternating blocks (pause, A A A A, pause, B B B B, ...), so that other load on
the machine hits both alike, and only the later runs of each block count: ONNX Runtime's
worker threads spin for tens of milliseconds after a run, and a run that starts while
the other session's threads still spin is slowed by them (2x for several runs in a row
on 2 cores; a graph timed frame by frame against another measures that contention, not
itself). The pause lets them go idle; the first run after it wakes threads and caches.
The self-check runs at every load; the timing only at the first load on a
machine: it is cached under ``$RTPOSE_CACHE_DIR`` (default ``~/.cache/rtpose``), keyed by
the CPU model and flags, the ONNX Runtime version, the thread count and the contents of
both graphs, so any change among them times again. Delete the cache file to re-time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rtpose.engine.selfcheck import FP32_BOUNDS, REDUCED_BOUNDS, CheckResult, load_references, refusal, run_check
from rtpose.export.spec import INPUT_NAME, OUTPUT_NAMES
from rtpose.machine import cpu_flags, cpu_name
from rtpose import jsonsafe

FASTER = 0.9  # int8 must take at most this fraction of fp32's time to be chosen
WARMUP = 4  # untimed runs of each graph first (ONNX Runtime's first runs allocate and plan)
TIMED_ROUNDS = 4  # alternating blocks of each graph
BLOCK = 4  # runs of a graph in a row per block; the first of each block is not timed
PAUSE_S = 0.1  # before each block: the other session's spinning threads go idle (see above)
TIMING_METHOD = "paused-blocks-v1"  # part of the cache key: timings by an older method are not reused
CACHE_FILE = "graph_choice.json"


@attrs.frozen
class Choice:
    graph: str
    reason: str
    check: CheckResult | None
    session: Any


def cache_dir() -> Path:
    return Path(os.environ.get("RTPOSE_CACHE_DIR") or Path.home() / ".cache" / "rtpose")


def _runner(session):
    return lambda batch: dict(zip(OUTPUT_NAMES, session.run(None, {INPUT_NAME: batch})))


def time_graphs(sessions: dict[str, Any], frame: np.ndarray, rounds: int = TIMED_ROUNDS,
                block: int = BLOCK, pause_s: float = PAUSE_S) -> dict[str, float]:
    """Median batch-1 ms of each session on ``frame (H, W)``.

    Timed in ``rounds`` alternating blocks of ``block`` runs per session, each after a
    pause of ``pause_s``; the first run of each block is not timed (see the module
    docstring).
    """
    batch = np.ascontiguousarray(frame[None, None])
    for session in sessions.values():
        for _ in range(WARMUP):
            session.run(None, {INPUT_NAME: batch})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            time.sleep(pause_s)
            for k in range(block):
                t = time.perf_counter()
                session.run(None, {INPUT_NAME: batch})
                if k:
                    times[name].append((time.perf_counter() - t) * 1e3)
    return {name: float(np.median(v)) for name, v in times.items()}


def _cache_key(engine, sessions: dict[str, Any]) -> str:
    import onnxruntime as ort

    h = hashlib.sha256()
    for part in (cpu_name(), " ".join(cpu_flags()), ort.__version__, str(engine.threads), TIMING_METHOD):
        h.update(part.encode() + b"\0")
    for precision in sorted(sessions):
        h.update(hashlib.sha256((engine.export_dir / engine.spec.graphs[precision]).read_bytes()).digest())
    return h.hexdigest()[:32]


def cached_timing(engine, sessions: dict[str, Any], frame: np.ndarray) -> tuple[dict[str, float], str | None]:
    """(ms per graph, when the cached timing was measured, or None when just timed); times and caches it when new."""
    path = cache_dir() / CACHE_FILE
    key = _cache_key(engine, sessions)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), dict) and set(sessions) <= set(cache[key].get("ms", {})):
        return cache[key]["ms"], str(cache[key].get("measured_at") or "an earlier load")
    ms = time_graphs(sessions, frame)
    cache[key] = {"ms": ms, "cpu": cpu_name(), "threads": engine.threads, "export": str(engine.export_dir),
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(jsonsafe.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: time again next load
    return ms, None


def choose_cpu_graph(engine, sessions: dict[str, Any]) -> Choice:
    """Pick ``fp32`` or ``int8`` for ``engine`` (an OrtCpuEngine) from open ``sessions``.

    Raises:
        RtposeError: the fp32 graph is needed and does not reproduce the references.
    """
    refs = load_references(engine.export_dir, engine.spec)
    if refs is None:
        return Choice("fp32", "no reference outputs to check the int8 graph against", None, sessions["fp32"])
    int8 = run_check(_runner(sessions["int8"]), refs, engine.spec, REDUCED_BOUNDS, "int8")
    if int8.passed:
        ms, measured_at = cached_timing(engine, sessions, refs.frames[0])
        timing = f"{ms['int8']:.1f} vs {ms['fp32']:.1f} ms per frame, " + (
            "just timed" if measured_at is None else
            f"timed at {measured_at} and cached in {cache_dir() / CACHE_FILE} (delete it to time again)")
        if ms["int8"] <= FASTER * ms["fp32"]:
            return Choice("int8", f"int8 passes its self-check and is faster here: {timing}", int8, sessions["int8"])
        reason = f"int8 passes its self-check but is not faster here: {timing}"
    else:
        reason = f"int8 fails its self-check here: {'; '.join(int8.failures)}"
    fp32 = run_check(_runner(sessions["fp32"]), refs, engine.spec, FP32_BOUNDS, "fp32")
    if not fp32.passed:
        raise refusal(engine.export_dir, engine.name, fp32, engine.refusal_fix())
    return Choice("fp32", reason, fp32, sessions["fp32"])
