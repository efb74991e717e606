"""The driver of a fleet run: plan, dispatch chunks to Ray workers, join, report.

The driver is the only writer of the output folder: workers return each chunk's poses
through Ray's object store, the driver saves it as a chunk file and records it in
``manifest.json`` at once, and writes a video's ``.slp`` when its last chunk is in. Run
the same command again after an interruption (Ctrl-C, a killed driver, a lost node) and
only the chunks without a file are predicted again. A worker that dies is restarted by
Ray and its chunk retried; a video that cannot be read is reported and the others go on.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import attrs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rtpose import __version__
from rtpose.data.predictions import write_predictions
from rtpose.engine.continuity import IdentityContinuity
from rtpose.engine.frames import resolve_input
from rtpose.data.video import VideoReader, describe_indices
from rtpose.engine.predict import EXIT_FRAMES_MISSING, follow_identities, model_provenance
from rtpose.errors import Interrupted, RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.fleet import init_local_ray, require_ray
from rtpose.fleet.inputs import DEFAULT_OUT_DIR, MANIFEST_NAME, expand_inputs, output_paths
from rtpose.fleet.plan import (DEFAULT_CHUNK_FRAMES, Chunk, files_digest, model_files, plan_chunks, size_workers,
                               video_key)
from rtpose.fleet.store import (CHUNKS_DIR, OutDirLock, load_chunk, load_manifest, save_chunk, save_json,
                                join_reports, stale_temporaries, unpack)
from rtpose.fleet.worker import FrameCounter, PredictWorker
from rtpose.paths import check_writable, claim_output_file, shell_path

EXIT_INCOMPLETE = EXIT_FRAMES_MISSING  # frames asked for were not read, or an input failed; the rest is written
# every input failed: no .slp at all, as one-process predict refuses an input it cannot
# predict (one that does not open or does not fit the model) with exit status 2
EXIT_ALL_FAILED = 2
FINISHED = ("done", "partial")
MAX_ATTEMPTS = 3  # a chunk whose worker died (after Ray's own restarts) goes to another worker this often


@attrs.define
class VideoJob:
    """One input of the run and what is left to do for it."""

    input: Path
    output: Path
    entry: dict[str, Any]
    video: Path | None = None
    chunk_dir: Path | None = None
    chunks: list[Chunk] = attrs.field(factory=list)
    remaining: set[str] = attrs.field(factory=set)
    replaces: bool = False  # its .slp exists and is not this work's (another model, engine, frames or file)
    stale_chunk_dir: Path | None = None  # chunks an earlier run left for other settings: removed once planned

    @property
    def finished(self) -> bool:
        """Whether nothing is left to do for this input (written, or failed)."""
        return self.entry["status"] in FINISHED or self.entry["status"] == "failed"


@attrs.define
class FleetResult:
    """What :func:`run_fleet` did: the manifest as written and the exit status."""

    manifest: dict[str, Any]
    manifest_path: Path
    exit_status: int


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_fleet(model: str | Path, inputs: Sequence[str], out_dir: str | Path | None = None,
              frames: str | None = None, only_labeled: bool = False, batch_size: int = 1,
              engine_name: str = "ort-cpu", workers: int | None = None, threads: int | None = None,
              ray_address: str | None = None, chunk_frames: int | None = None, continuity: bool = True,
              progress: bool = True, console: Console | None = None, precision: str = "auto",
              overwrite: bool = False) -> FleetResult:
    """Predict every input on Ray workers; one ``.slp`` per input in ``out_dir``.

    Args:
        model: export directory (model.onnx + rtpose.json); read here and sent to the workers.
        inputs: files, folders and glob patterns (see :func:`rtpose.fleet.inputs.expand_inputs`).
            The driver and every worker must see the videos at these paths.
        out_dir: output folder (default ``./rtpose-predictions``): ``<name>.predictions.slp``
            per input, ``manifest.json``, and chunk files while a video is unfinished.
        frames: ``START-END`` range applied to every input, or None for all frames.
        only_labeled: with .slp inputs, only their labeled frames.
        batch_size: frames per engine call on the workers.
        engine_name: engine each worker loads.
        workers: Ray workers (actors); default one per chunk up to one per CPU.
        threads: ONNX Runtime threads per worker; default as many as fit (see
            :func:`rtpose.fleet.plan.size_workers`).
        ray_address: Ray cluster address; default ``$RAY_ADDRESS``, else a local Ray.
        chunk_frames: frames per chunk (default 500).
        continuity: apply identity continuity (in frame order, after joining chunks).
        progress: show the progress bar and the summary table.
        console: where the bar and table go (default stderr / stdout).
        precision: ``auto`` (each worker's engine picks the graph for its node; the
            manifest records which ran), ``int8`` or ``fp32`` (one graph everywhere).
        overwrite: replace ``.slp`` files in ``out_dir`` that are not this work's
            (another run's with other settings, or any other file of that name);
            without it such a run is refused before Ray starts. Resuming never needs it.

    Returns:
        The manifest, its path, and the exit status (:func:`exit_status`): 0 when every
        input was predicted in full, :data:`EXIT_ALL_FAILED` (2, as the single-process
        ``predict`` on an input it refuses) when every input failed and nothing was
        written, else :data:`EXIT_INCOMPLETE` (3, as the single-process ``predict`` when
        frames are missing) when some input failed or some frames asked for could not be
        read.

    Raises:
        RtposeError: bad arguments, inputs that name nothing, Ray missing or unreachable,
            the output folder taken by another run, outputs there that are not this
            work's without ``overwrite`` (no .slp, chunk or manifest is touched).
        KeyboardInterrupt: after saving the manifest; run again to resume.
    """
    for name, value in (("--batch-size", batch_size), ("--chunk-frames", chunk_frames), ("--workers", workers),
                        ("--threads", threads)):
        if value is not None and value < 1:
            raise RtposeError(f"{name} must be at least 1 (got {value})")
    ray = require_ray()
    notes: list[str] = []
    paths = expand_inputs(inputs, notes)
    out_dir = (Path(out_dir) if out_dir else Path.cwd() / DEFAULT_OUT_DIR).resolve()
    check_out_dir(out_dir, len(inputs))
    check_writable(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtposeError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    outputs = output_paths(paths, out_dir)
    spec = ExportSpec.load(model)
    files = model_files(model)
    digest = files_digest(files)
    chunk_frames = chunk_frames or DEFAULT_CHUNK_FRAMES
    with OutDirLock(out_dir):
        for tmp in stale_temporaries(out_dir):
            tmp.unlink(missing_ok=True)
        manifest_path = out_dir / MANIFEST_NAME
        manifest = load_manifest(manifest_path)
        for earlier in manifest["runs"]:  # we hold the folder's lock: a run still "running" was killed
            if earlier.get("status") == "running":
                earlier["status"] = "died"
        run = {"run": len(manifest["runs"]) + 1, "started": _now(), "ended": None, "status": "running",
               "driver": platform.node(), "rtpose": __version__, "command": " ".join(sys.argv),
               "chunks_predicted": 0, "frames_predicted": 0}
        manifest["runs"].append(run)
        manifest.update(model=str(Path(model).resolve()), model_sha1=digest, engine=engine_name, precision=precision)
        jobs = [_plan(p, o, manifest, frames, only_labeled, digest, engine_name, batch_size, chunk_frames, run, spec,
                      precision)
                for p, o in zip(paths, outputs)]
        _claim_outputs(jobs, out_dir, overwrite)  # before the manifest, a chunk or Ray is touched
        for job in jobs:
            if job.stale_chunk_dir is not None:
                shutil.rmtree(job.stale_chunk_dir, ignore_errors=True)  # chunks of another model, engine or video
        save_json(manifest_path, manifest)
        console = console or Console(stderr=True)
        for note in notes:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        driver = _Driver(ray, spec, files, jobs, manifest, manifest_path, run, engine_name, batch_size, continuity,
                         console, progress, frames, precision, only_labeled)
        try:
            driver.run(workers, threads, ray_address)
        except KeyboardInterrupt:
            run.update(status="interrupted", ended=_now())
            for job in jobs:  # a video whose chunks were under way: its done chunks are kept for the next run
                if job.entry["status"] == "running":
                    job.entry["status"] = "interrupted"
            save_json(manifest_path, manifest)
            left = sum(len(j.remaining) for j in jobs)
            print(f"interrupted: {left} chunk{'' if left == 1 else 's'} left; run the same command again to resume", file=sys.stderr)
            raise Interrupted() from None
        except Exception as exc:
            run.update(status="failed", ended=_now(), error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            save_json(manifest_path, manifest)
            raise
        run.update(status="complete", ended=_now())
        save_json(manifest_path, manifest)
    if progress:
        # off a terminal (a log, a pipe) rich would fold the reasons into an 80-column table
        print_summary(manifest, [str(p) for p in paths], run,
                      Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=160))
    return FleetResult(manifest, manifest_path, exit_status(manifest, [str(p) for p in paths]))


def exit_status(manifest: dict, inputs: Sequence[str]) -> int:
    """The exit status of a fleet run over ``inputs`` (keys of ``manifest["videos"]``).

    0 when every input is predicted in full (by this run or an earlier one),
    :data:`EXIT_ALL_FAILED` (2) when every input failed (nothing written), else
    :data:`EXIT_INCOMPLETE` (3: some input failed or lacks frames; the others are written).
    """
    statuses = [manifest["videos"][key]["status"] for key in inputs]
    if all(s == "done" for s in statuses):
        return 0
    return EXIT_ALL_FAILED if all(s == "failed" for s in statuses) else EXIT_INCOMPLETE


def _plan(path: Path, output: Path, manifest: dict, frames: str | None, only_labeled: bool, digest: str,
          engine_name: str, batch_size: int, chunk_frames: int, run: dict, spec: ExportSpec,
          precision: str) -> VideoJob:
    """The job of one input: what earlier runs finished stays; the rest is chunked."""
    old = manifest["videos"].get(str(path), {})
    entry = {"input": str(path), "output": str(output), "status": "pending", "error": None, "engine": engine_name}
    manifest["videos"][str(path)] = entry
    job = VideoJob(path, output, entry)
    try:
        video, indices = resolve_input(path, frames, only_labeled, spec)  # an input that does not fit fails alone
        if not indices:
            raise RtposeError(f"{path}: no frames to predict on")
    except RtposeError as exc:
        entry.update(status="failed", error=str(exc), run=run["run"])
        return job
    key = video_key(video, indices, digest, engine_name, batch_size, precision)
    job.video = video
    job.chunk_dir = output.parent / CHUNKS_DIR / f"{output.name[:-len('.predictions.slp')]}-{key[:12]}"
    if old.get("key") == key and old.get("status") in FINISHED and output.exists():
        manifest["videos"][str(path)] = job.entry = old  # finished by an earlier run: nothing to do
        return job
    job.replaces = output.exists() and old.get("key") != key  # same key: this work, cut short after writing it
    old_dir = old.get("chunk_dir")
    if old_dir and Path(old_dir) != job.chunk_dir:
        job.stale_chunk_dir = Path(old_dir)
    kept = old.get("chunks", {}) if old.get("key") == key else {}
    sequential_from = old.get("sequential_from") if old.get("key") == key else None
    job.chunks = plan_chunks(0, [i for i in indices if sequential_from is None or i < sequential_from], chunk_frames)
    if sequential_from is not None:  # a frame there did not decode: read on from there in one chunk
        job.chunks.append(Chunk(0, tuple(i for i in indices if i >= sequential_from)))
        entry["sequential_from"] = sequential_from
    chunks = {}
    for chunk in job.chunks:
        if (job.chunk_dir / f"{chunk.name}.npz").exists():  # written atomically: whole, and of this key
            record = kept.get(chunk.name, {})
            chunks[chunk.name] = record if record.get("status") == "done" else {
                "frames": len(chunk), "status": "done", "run": None}
        else:
            chunks[chunk.name] = {"frames": len(chunk), "status": "pending"}
            job.remaining.add(chunk.name)
    entry.update(video=str(video), key=key, chunk_dir=str(job.chunk_dir), frames_asked=len(indices),
                 video_fps=_video_fps(video), chunks=chunks)
    return job


def _claim_outputs(jobs: Sequence[VideoJob], out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace ``.slp`` files that are not this run's own work, unless ``overwrite``.

    As one-input ``predict`` refuses an existing ``-o``; said before Ray starts.

    Raises:
        RtposeError: one line naming the file (or the folder and how many), and ``--overwrite``.
    """
    taken = [job.output for job in jobs if job.replaces]
    if overwrite or not taken:
        return
    if len(taken) == 1:
        claim_output_file(taken[0], overwrite)
    names = ", ".join(p.name for p in taken[:3]) + (", ..." if len(taken) > 3 else "")
    raise RtposeError(f"{out_dir} already holds {len(taken)} of this run's outputs ({names}), from other settings "
                      "or another run: give another -o, or --overwrite to replace them")


def _video_fps(video: Path) -> float | None:
    """The frame rate the video declares (None when it declares none)."""
    with VideoReader(video) as reader:
        return round(reader.fps, 3) if reader.fps > 0 else None


class _Driver:
    """Dispatch loop: keeps two chunks queued on every worker, saves what comes back."""

    def __init__(self, ray, spec: ExportSpec, files: dict[str, bytes], jobs: list[VideoJob], manifest: dict,
                 manifest_path: Path, run: dict, engine_name: str, batch_size: int, continuity: bool,
                 console: Console, progress: bool, frames: str | None, precision: str, only_labeled: bool = False):
        self.ray, self.spec, self.files, self.jobs = ray, spec, files, jobs
        self.manifest, self.manifest_path, self.run_record = manifest, manifest_path, run
        self.engine_name, self.batch_size, self.continuity = engine_name, batch_size, continuity
        self.console, self.progress, self.frames, self.precision = console, progress, frames, precision
        self.only_labeled = only_labeled

    def run(self, workers: int | None, threads: int | None, ray_address: str | None) -> None:
        for job in self.jobs:  # every chunk already on disk from an earlier run: join now
            if job.chunks and not job.remaining and not job.finished:
                self._finish(job)
        todo = deque((j, c) for j in self.jobs for c in j.chunks if c.name in j.remaining)
        if not todo:
            return
        total = sum(len(c) for j in self.jobs if j.chunks for c in j.chunks)
        kept = total - sum(len(c) for _, c in todo)
        started_here = self._connect(ray_address)
        try:
            self._dispatch(todo, total, kept, workers, threads)
        finally:
            if started_here:
                self.ray.shutdown()

    def _connect(self, ray_address: str | None) -> bool:
        """Join the Ray cluster (or start a local one); True when this call started Ray."""
        ray = self.ray
        if ray.is_initialized():
            return False
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            options["include_dashboard"] = False
        try:
            if address is None:
                init_local_ray(ray, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = address or "a local Ray"
            raise RtposeError(f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}") from None
        return True

    def _make_workers(self, n_chunks: int, workers: int | None, threads: int | None) -> list:
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpu = self.engine_name != "ort-cpu"
        if gpu:
            gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
            if gpus == 0:
                raise RtposeError(f"engine {self.engine_name} needs a GPU and the Ray cluster has none")
            workers = workers or min(n_chunks, gpus)
            threads = threads or 1
        else:
            workers, threads = size_workers([n["Resources"].get("CPU", 0) for n in nodes], n_chunks, workers, threads)
        self.run_record.update(workers=workers, threads=threads, nodes=len(nodes))
        remote = ray.remote(PredictWorker).options(num_cpus=threads, num_gpus=1 if gpu else 0,
                                                   max_restarts=2, max_task_retries=2)
        self._model = [ray.put(self.files)]  # owned by the driver; nested, so a worker fetches it when it loads
        return [remote.remote(self.engine_name, threads, self.batch_size, self.precision) for _ in range(workers)]

    def _dispatch(self, todo: deque, total: int, kept: int, workers: int | None, threads: int | None) -> None:
        ray = self.ray
        actors = self._make_workers(len(todo), workers, threads)
        counter = ray.remote(FrameCounter).options(num_cpus=0).remote()
        in_flight: dict[Any, tuple[Any, VideoJob, Chunk]] = {}
        attempts: dict[tuple[int, str], int] = {}

        def submit(actor) -> None:
            while todo:
                job, chunk = todo.popleft()
                if job.finished:  # its video failed meanwhile
                    continue
                ref = actor.predict.remote(self._model, str(job.video), list(chunk.indices), _chunk_id(job, chunk), counter)
                in_flight[ref] = (actor, job, chunk)
                return

        columns = [TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                   TextColumn("{task.fields[fps]} FPS"), TimeRemainingColumn(), TextColumn("{task.fields[videos]}")]
        t0 = time.perf_counter()
        finished_frames = kept
        with Progress(*columns, console=self.console, disable=not self.progress, transient=True) as bar:
            task = bar.add_task("", total=total, completed=kept, fps="-", videos=self._videos_text())
            for actor in actors:
                submit(actor)
                submit(actor)
            try:
                while in_flight:
                    ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
                    for ref in ready:
                        actor, job, chunk = in_flight.pop(ref)
                        try:
                            out = ray.get(ref)
                        except ray.exceptions.RayActorError as exc:
                            counter.forget.remote(_chunk_id(job, chunk))
                            n = attempts[(id(job), chunk.name)] = attempts.get((id(job), chunk.name), 0) + 1
                            actors = [a for a in actors if a is not actor]
                            if n < MAX_ATTEMPTS and actors:
                                todo.appendleft((job, chunk))
                                submit(actors[len(todo) % len(actors)])
                            else:
                                self._fail(job, f"worker lost ({type(exc).__name__}) on frames {chunk.name}")
                            continue
                        except ray.exceptions.RayTaskError as exc:
                            self._fail(job, f"frames {chunk.name}: {str(exc).strip().splitlines()[-1]}")
                            counter.forget.remote(_chunk_id(job, chunk))
                            submit(actor)
                            continue
                        counter.forget.remote(_chunk_id(job, chunk))
                        if "error" in out:
                            self._fail(job, out["error"])
                        elif not job.finished and chunk in job.chunks:  # else: replaced by a sequential tail
                            finished_frames += len(chunk)
                            total += self._chunk_done(job, chunk, out, todo)
                        submit(actor)
                    in_progress = ray.get(counter.total.remote())
                    new = finished_frames - kept + in_progress
                    done = min(total, finished_frames + in_progress)
                    elapsed = time.perf_counter() - t0
                    bar.update(task, completed=done, total=total, fps=f"{new / elapsed:.1f}" if new else "-",
                               videos=self._videos_text())
            finally:
                for actor in actors:
                    ray.kill(actor)
                ray.kill(counter)
        self.run_record.update(seconds=round(time.perf_counter() - t0, 3))

    def _videos_text(self) -> str:
        done = sum(1 for j in self.jobs if j.finished)
        return f"{done}/{len(self.jobs)} videos"

    def _chunk_done(self, job: VideoJob, chunk: Chunk, out: dict, todo: deque) -> int:
        """Save a chunk that came back; returns the frames added to the run's work (a tail to redo)."""
        arrays = out["arrays"]
        if len(arrays["not_decoded"]) and chunk is not job.chunks[-1]:
            return self._read_on_sequentially(job, chunk, todo)
        save_chunk(job.chunk_dir / f"{chunk.name}.npz", arrays)
        m = out["machine"]
        job.entry["chunks"][chunk.name] = {
            "frames": len(chunk), "status": "done", "predicted": len(arrays["frame_idx"]),
            "not_read": len(arrays["not_decoded"]) + len(arrays["past_end"]), "run": self.run_record["run"],
            "seconds": round(out["seconds"], 3), "host": m["host"], "pid": m["pid"], "cpu": m["cpu"],
            "device": m["device"], "graph": m.get("graph"),
        }
        job.remaining.discard(chunk.name)
        job.entry["status"] = "running"
        self.run_record["chunks_predicted"] += 1
        self.run_record["frames_predicted"] += len(arrays["frame_idx"])  # frames read, not frames declared
        if not job.remaining:
            self._finish(job)
        save_json(self.manifest_path, self.manifest)
        return 0

    def _read_on_sequentially(self, job: VideoJob, chunk: Chunk, todo: deque) -> int:
        """A frame of ``chunk`` did not decode: predict from its start to the video's end as one chunk.

        Past a frame that does not decode, OpenCV's seeking can land on the wrong frame (it
        counts decoded frames; seen on an MJPEG .avi with one broken frame: a seek to
        frame 14 gave frame 13), so chunks that start after the damage are not trusted.
        One sequential read from before it, as one process reads the video, replaces them.
        The manifest keeps the point (``sequential_from``) so a resumed run plans the same.
        """
        k = job.chunks.index(chunk)
        dropped = job.chunks[k:]
        redo = sum(len(c) for c in dropped if c.name not in job.remaining) + len(chunk)
        for c in dropped:
            (job.chunk_dir / f"{c.name}.npz").unlink(missing_ok=True)
            job.entry["chunks"].pop(c.name, None)
            job.remaining.discard(c.name)
        tail = Chunk(chunk.video, tuple(i for c in dropped for i in c.indices))
        job.chunks = [*job.chunks[:k], tail]
        job.remaining.add(tail.name)
        job.entry["chunks"][tail.name] = {"frames": len(tail), "status": "pending"}
        job.entry["sequential_from"] = tail.indices[0]
        todo.appendleft((job, tail))
        save_json(self.manifest_path, self.manifest)
        return redo

    def _fail(self, job: VideoJob, error: str) -> None:
        if job.finished:
            return
        job.entry.update(status="failed", error=error, run=self.run_record["run"])
        job.remaining.clear()
        save_json(self.manifest_path, self.manifest)

    def _finish(self, job: VideoJob) -> None:
        """Join the chunks of ``job`` in frame order, apply continuity, write its .slp.

        Frames that could not be read are handled as the single-process ``predict``
        handles them (see :mod:`rtpose.engine.predict`): left out, listed in the .slp's
        provenance and the manifest; without ``--frames`` a stream shorter than its
        container declares is a shorter video, noted but complete.
        """
        frames, reports = [], []
        for chunk in job.chunks:
            f, lost = unpack(load_chunk(job.chunk_dir / f"{chunk.name}.npz"))
            frames.extend(f)
            reports.append(lost)
        frames.sort(key=lambda item: item[0])
        lost = join_reports(reports)
        notes = lost.notes(range_given=self.frames is not None or self.only_labeled)
        if lost.stream_frames is not None and self.frames is None:
            lost.past_end.clear()  # no range asked for: the video is just shorter than declared
        missing = lost.missing
        follow = IdentityContinuity(self.spec.n_classes) if self.continuity else None
        entry = job.entry
        records = list(entry["chunks"].values())
        seconds = sum(r.get("seconds", 0.0) for r in records)
        entry.update(
            frames=len(frames), frames_not_read=len(missing), first_not_read=missing[0] if missing else None,
            notes=notes, stream_frames=lost.stream_frames,
            seconds=round(seconds, 3), fps=round(len(frames) / seconds, 2) if seconds else None,
            device=next((r["device"] for r in records if "device" in r), None),
            machines=sorted({f"{r['host']} ({r['cpu']})" for r in records if "host" in r}),
            graphs=sorted({r["graph"] for r in records if r.get("graph")}),
            run=self.run_record["run"],
        )
        if not frames:
            entry.update(status="failed", error=f"{job.video}: no frame could be read" + (
                f" ({'; '.join(notes)})" if notes else ""))
        else:
            provenance = model_provenance(self.manifest["model"], self.engine_name,
                                          ", ".join(entry["graphs"]) or None, self.continuity)
            if missing:
                provenance["rtpose.frames_not_read"] = missing
            if lost.stream_frames is not None:
                provenance["rtpose.stream_frames"] = lost.stream_frames
            write_predictions(job.output, job.video, self.spec.node_names, self.spec.edges, self.spec.class_names,
                              follow_identities(frames, follow), provenance=provenance)
            entry.update(status="partial" if missing else "done",
                         identities_followed=follow.followed if follow is not None else None)
            if missing:
                entry["error"] = (f"{len(missing)} frame(s) asked for could not be read ({describe_indices(missing)}); "
                                  f"the .slp holds the {len(frames)} that were")
        save_json(self.manifest_path, self.manifest)
        shutil.rmtree(job.chunk_dir, ignore_errors=True)
        chunks_root = job.chunk_dir.parent
        if chunks_root.is_dir() and not any(chunks_root.iterdir()):
            chunks_root.rmdir()


def _chunk_id(job: VideoJob, chunk: Chunk) -> str:
    return f"{job.input}:{chunk.name}"


def print_summary(manifest: dict, inputs: Sequence[str], run: dict, console: Console) -> None:
    """The table at the end of a run: one row per input, then the run's throughput."""
    table = Table(title=f"rtpose predict, run {run['run']}: {manifest['engine']}", title_justify="left")
    table.add_column("video")
    table.add_column("status")
    for column in ("frames", "not read", "FPS/worker"):
        table.add_column(column, justify="right")
    table.add_column("output, or why not", overflow="fold")
    for key in inputs:
        e = manifest["videos"][key]
        if e["status"] == "done":
            note = "; ".join([Path(e["output"]).name, *e.get("notes", [])])
        elif e["status"] == "partial":
            note = f"{Path(e['output']).name}; {e['error']}"
        else:
            note = e.get("error") or "-"
        table.add_row(Path(key).name, e["status"], str(e.get("frames", "-")), str(e.get("frames_not_read", "-")),
                      f"{e['fps']:.1f}" if e.get("fps") else "-", note)
    console.print(table)
    failed = [key for key in inputs if manifest["videos"][key]["status"] == "failed"]
    first = ""
    if failed:
        error = manifest["videos"][failed[0]].get("error") or "no reason recorded"
        first = f"first: {error}" if failed[0] in error else f"first: {failed[0]}: {error}"  # errors name the input
    if run.get("chunks_predicted"):
        fps = run["frames_predicted"] / run["seconds"] if run.get("seconds") else 0.0
        chunks, workers, threads = (f"{run[key]} {noun}{'' if run[key] == 1 else 's'}" for key, noun in
                                    (("chunks_predicted", "chunk"), ("workers", "worker"), ("threads", "thread")))
        console.print(f"{run['frames_predicted']} frames in {chunks}, {run['seconds']:.1f} s: {fps:.1f} frames/s, "
                      f"{workers} x {threads} on {run['nodes']} node(s)")
        if failed:
            console.print(f"{len(failed)} of {len(inputs)} inputs failed ({first})", markup=False, highlight=False,
                          soft_wrap=True)
        return
    if failed and len(failed) == len(inputs):
        line = f"nothing predicted: every input failed ({len(failed)} failed; {first})"
    elif failed:  # the others were written before, or joined now from an earlier run's chunks
        line = (f"nothing predicted: {len(failed)} failed ({first}), {len(inputs) - len(failed)} done by an "
                "earlier run")
    else:
        line = "nothing predicted: every chunk was done by an earlier run"
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def check_out_dir(out_dir: Path, n_inputs: int) -> None:  # n_inputs: the -i items given
    """Refuse an ``-o`` that cannot be the output folder of several inputs.

    That is an existing file, or a new name that reads as one ``.slp`` (a folder input
    writes one ``.slp`` per video into a folder, so ``-o x.slp`` would make a folder of
    that name).

    Raises:
        RtposeError: one line naming ``out_dir`` and what to give instead.
    """
    several = f"{n_inputs} inputs" if n_inputs > 1 else "a folder, a pattern or a Ray option"
    if out_dir.exists() and not out_dir.is_dir():
        raise RtposeError(f"-o {out_dir}: is a file; with {several}, -o names the folder that gets one "
                          ".slp per video")
    if out_dir.suffix.lower() == ".slp" and not out_dir.is_dir():
        raise RtposeError(f"-o {out_dir}: with {several}, -o names a folder that gets one .slp per video "
                          f"(e.g. -o {shell_path(out_dir.with_suffix(''))}); for one .slp, give one video")


def main(args: argparse.Namespace) -> int:
    """``rtpose predict`` with several inputs, a folder, a pattern or a fleet option."""
    result = run_fleet(args.model, args.input, args.output, args.frames, args.only_labeled, args.batch_size,
                       args.engine, args.workers, args.threads, args.ray, args.chunk_frames,
                       continuity=not args.no_continuity, precision=args.precision, overwrite=args.overwrite)
    print(f"manifest: {result.manifest_path}")
    return result.exit_status
