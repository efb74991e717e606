"""One interface over every runtime: a uint8 frame in, identified ``Poses`` out.

The graph does everything up to per-instance class probabilities; the host then makes
one instance per class by Hungarian matching (scipy), which is cheap and keeps the
graph free of data-dependent control flow.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rtpose.data.video import to_gray
from rtpose.engine.identities import assign_identities  # public here too (tests, callers)
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.paths import REPO_ROOT, shell_path
from rtpose.poses import Poses


PRECISIONS = ("auto", "int8", "fp32")  # which graph of the export to run; auto: the engine decides


class Engine(abc.ABC):
    """A loaded, warmed-up model. Not thread-safe: one inference thread owns it.

    Backends implement ``device`` and ``run_raw``; everything else (frame preparation,
    identity assignment) is shared. ``rtpose.engine.base.ENGINES`` maps names to backends
    and ``load_engine`` opens one.

    ``graph`` says which arithmetic runs (``fp32``, ``int8``, ``fp16``) and ``graph_reason``
    why; ``check`` is the self-check against the export's references (rtpose.engine.selfcheck),
    None for an export without references.

    Args:
        export_dir: An export directory (rtpose.export.spec lists its files).

    Raises:
        RtposeError: The directory holds no readable ``rtpose.json`` or misses a graph it names.
    """

    name: str = ""
    reduced_precision: bool = False  # True: checked with the int8/FP16 bounds, not fp32's

    def __init__(self, export_dir: str | Path):
        self.export_dir = Path(export_dir)
        self.spec = ExportSpec.load(self.export_dir)
        self.graph = "fp32"
        self.graph_reason = ""
        self.check = None

    @property
    @abc.abstractmethod
    def device(self) -> str:
        """What runs the model, in words (for benchmarks and summaries)."""

    @abc.abstractmethod
    def run_raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on a prepared ``(B, 1, H, W)`` uint8 batch; outputs by name."""

    def infer(self, frame: np.ndarray) -> Poses:
        """Poses of one frame: what the live loop calls, at batch size 1.

        Args:
            frame: ``(H, W)`` uint8 grey, or ``(H, W, 3)`` BGR (converted to grey), of the
                exported ``frame_height x frame_width``; a frame a few pixels smaller, that
                the graph pads to the same size, is zero-padded at the bottom and right
                (coordinates are unchanged; see ``check_frame_size``).

        Returns:
            ``Poses`` in full-frame pixels: ``points (n, nodes, 2)`` float32 (NaN below the
            export's ``point_threshold``), ``point_scores (n, nodes)``, ``instance_scores
            (n,)``, ``identity (n,)`` (one instance per class by Hungarian assignment, -1 for
            instances beyond the number of classes) and ``identity_scores (n, classes)``;
            ``n`` is at most the export's ``max_instances``.

        Raises:
            RtposeError: The frame's size does not fit the export (``check_frame_size``).
        """
        return self.infer_batch([frame])[0]

    def infer_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[Poses]:
        """Poses of several frames in one run of the graph (offline ``predict``).

        Args:
            frames: A sequence of frames as ``infer`` takes them, or a ``(B, H, W)`` array.

        Returns:
            One ``Poses`` per frame, in order, as ``infer`` returns them.

        Raises:
            RtposeError: A frame's size does not fit the export (``check_frame_size``).
        """
        batch = np.stack([prepare_frame(f, self.spec) for f in frames])[:, None]
        raw = self.run_raw(batch)
        return [raw_to_poses(raw, i, self.spec) for i in range(batch.shape[0])]

    def warmup(self, n: int = 5) -> None:
        """Run ``n`` blank frames so that the first real frame is not slowed by lazy initialisation."""
        frame = np.zeros((self.spec.frame_height, self.spec.frame_width), np.uint8)
        for _ in range(n):
            self.infer(frame)

    def close(self) -> None:
        """Release the runtime's resources (a GPU context, a session); the engine is unusable after."""

    def self_check(self):
        """Run the graph on the export's references (rtpose.engine.selfcheck).

        Returns:
            The CheckResult, or None where the export has no references.

        Raises:
            RtposeError: The graph does not reproduce the references on this machine.
        """
        from rtpose.engine.selfcheck import FP32_BOUNDS, REDUCED_BOUNDS, load_references, refusal, run_check

        refs = load_references(self.export_dir, self.spec)
        if refs is None:
            self.graph_reason += " (unchecked: the export has no reference outputs; re-export it with this rtpose)"
            return None
        bounds = REDUCED_BOUNDS if self.reduced_precision or self.graph != "fp32" else FP32_BOUNDS
        self.check = run_check(self.run_raw, refs, self.spec, bounds, self.graph)
        if not self.check.passed:
            raise refusal(self.export_dir, self.name, self.check, self.refusal_fix())
        return self.check

    def refusal_fix(self) -> str:
        """What a user can do about a failed self-check (the end of the one-line error)."""
        return ("the export was damaged or changed after it was written, or this runtime computes it differently: "
                "export it again with `rtpose export`, or try another --engine")

    def describe_graph(self) -> str:
        """``int8 graph (why)``: for predict, bench and the run summary."""
        return f"{self.graph} graph" + (f" ({self.graph_reason.strip()})" if self.graph_reason else "")


def padded_size(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (what the graph pads a side to)."""
    return -(-n // multiple) * multiple


# Frames whose aspect ratio (width / height) is this many times the model's, or more (1:1
# against 4:3 is 1.33; a camera ROI a stride smaller, 896x1024 against 1024x1024, is 1.14),
# come from another setup: a graph re-exported for their size would still look for animals
# at the scale of the training frames.
OTHER_SETUP_ASPECT = 1.25


def check_frame_size(height: int, width: int, spec: ExportSpec, where: str = "frame") -> None:
    """Refuse frames of another size than the export's, beyond the graph's own padding.

    The graph pads every frame with zeros at the bottom and right to a multiple of
    ``spec.frame_multiple`` pixels (rtpose.nn.pipeline). A frame that pads to the same
    size as the exported one (a few pixels smaller: a camera ROI, a crop) is padded here
    the same way and runs as it would on a graph exported at its own size. Any other
    size (larger, or smaller by more: another setup's video) is refused.

    A re-export (``rtpose export --frame-size HxW``) changes only the frame size the
    graph takes, not the scale its networks look for animals at (input scale, crop
    size), so the advice suggests one only where the frames may be of the same setup (a
    camera ROI, another resolution of the same view): where the aspect ratios differ by
    :data:`OTHER_SETUP_ASPECT` or more, it says the model was trained on other frames.

    Args:
        height: the frame's height in pixels.
        width: the frame's width in pixels.
        spec: the export's spec.
        where: what gives the frames (an input file, a camera), to start the message.

    Raises:
        RtposeError: one line naming ``where``, both sizes and what would help.
    """
    H, W, m = spec.frame_height, spec.frame_width, spec.frame_multiple
    if (height, width) == (H, W):
        return
    if height <= H and width <= W and padded_size(height, m) == padded_size(H, m) \
            and padded_size(width, m) == padded_size(W, m):
        return
    head = f"{where}: frames are {height}x{width} but the model takes {H}x{W}"
    source = spec.source or {}
    aspect = (width / height) / (W / H)
    if max(aspect, 1 / aspect) >= OTHER_SETUP_ASPECT:
        raise RtposeError(f"{head}: it was trained on frames of another shape (another setup); use a model "
                          "trained on these frames (rtpose train LABELS.slp makes one)")
    low_h, low_w = max(1, padded_size(H, m) - m + 1), max(1, padded_size(W, m) - m + 1)
    why = ""
    if height <= H and width <= W and (low_h, low_w) != (H, W):  # smaller than its padding allows
        why = f" (or, padded as the graph pads, {low_h}x{low_w} up to that)"
    if source.get("format") == "sleap-nn":  # rtpose export refuses another size for these
        todo = ("this sleap-nn model runs at the frame size it was trained at (its preprocessing.max_height/"
                "max_width) only: use frames of that size, or a model trained on these")
    else:
        todo = (f"if they show the animals at the scale of its training frames (e.g. another ROI of the same camera), "
                f"{_re_export_advice(source, height, width, spec.max_instances)}; else use frames of {H}x{W} or a model trained on these frames")
    raise RtposeError(f"{head}{why}; {todo}")


# The shipped export's training run, as its rtpose.json records it (relative to the
# repository: `make model` trains it there, about 18 min on 2 CPU cores, Makefile).
SHIPPED_MODEL_RUN = "runs/flies13"


def training_run(source: dict[str, Any]) -> Path | None:
    """The folder an rtpose export was trained in, absolute, or None when it records none.

    ``rtpose export`` records it absolute; a relative one (the shipped ``models/flies13``,
    exported by ``make model`` from the repository root) is taken relative to the
    repository, where ``make model`` writes it.
    """
    if source.get("format") != "rtpose" or not source.get("dir"):
        return None
    path = Path(source["dir"])
    return path if path.is_absolute() else REPO_ROOT / path


def _re_export_advice(source: dict[str, Any], height: int, width: int, max_instances: int) -> str:
    """How to get a graph for ``height`` x ``width`` frames from the export's training run.

    Names the run's folder where it exists here (an imported model's two network
    folders, with the ``--max-instances`` its export was given); else says it is not on
    this machine and how to get one (``make model`` for the shipped model).
    """
    size = f"--frame-size {height}x{width}"
    run = training_run(source)
    networks = source.get("networks")
    if run is None and isinstance(networks, dict) and all(n.get("dir") for n in networks.values()):
        dirs = " ".join(shell_path(networks[k]["dir"]) for k in ("centroid", "instance") if k in networks)
        return (f"re-export it for them (rtpose export {dirs} -o DIR {size} --max-instances {max_instances}; "
                "the scale it looks at stays)")
    if run is None:
        return f"re-export its training run for them (rtpose export MODEL_DIR -o DIR {size}; the scale it looks at stays)"
    if run.is_dir():
        return f"re-export it for them (rtpose export {shell_path(run)} -o DIR {size}; the scale it looks at stays)"
    if Path(source["dir"]).as_posix() == SHIPPED_MODEL_RUN and not Path(source["dir"]).is_absolute():
        return (f"re-export its training run for them; that run ({run}) is not on this machine: `make model` "
                f"retrains it there (about 18 min on 2 CPU cores; it re-exports models/flies13 too), then rtpose export {shell_path(run)} -o DIR {size} (the scale "
                "it looks at stays)")
    return (f"re-export its training run for them (rtpose export RUN_DIR -o DIR {size}; the scale it looks at "
            f"stays); that run ({run}) is not on this machine: copy it here or train one")


def prepare_frame(frame: np.ndarray, spec: ExportSpec) -> np.ndarray:
    """Grey uint8 of exactly the exported size.

    Frames a few pixels smaller are zero-padded as the graph pads them anyway; other
    sizes are refused (see ``check_frame_size``).
    """
    img = to_gray(np.asarray(frame))
    h, w = img.shape
    H, W = spec.frame_height, spec.frame_width
    if (h, w) == (H, W):
        return img
    check_frame_size(h, w, spec)
    out = np.zeros((H, W), np.uint8)
    out[:h, :w] = img
    return out


def raw_to_poses(raw: dict[str, np.ndarray], i: int, spec: ExportSpec) -> Poses:
    """Graph outputs for batch item ``i`` -> Poses of the valid instances."""
    valid = raw["valid"][i].astype(bool)
    points = raw["points"][i][valid].astype(np.float32)
    scores = raw["point_scores"][i][valid].astype(np.float32)
    points[scores < spec.point_threshold] = np.nan
    probs = raw["class_probs"][i][valid].astype(np.float32)
    return Poses(
        points=points,
        point_scores=scores,
        instance_scores=raw["instance_scores"][i][valid].astype(np.float32),
        identity=assign_identities(probs),
        identity_scores=probs,
    )


ENGINES = {
    "ort-cpu": "rtpose.engine.ort_engine:OrtCpuEngine",
    "ort-cuda": "rtpose.engine.ort_engine:OrtCudaEngine",
    "ort-tensorrt": "rtpose.engine.ort_engine:OrtTensorRtEngine",
    "torch-cuda": "rtpose.engine.torch_cuda:TorchCudaEngine",
}


def load_engine(export_dir: str | Path, name: str = "ort-cpu", precision: str = "auto", **options) -> Engine:
    """Open ``export_dir`` with the named runtime, warm it up and self-check it.

    The self-check runs the graph on the export's references (rtpose.engine.selfcheck).

    Args:
        export_dir: an export directory (rtpose.export.spec).
        name: one of ``ENGINES``.
        precision: ``auto`` (the engine picks: ort-cpu runs int8 where it passes its
            self-check and is faster here), ``int8`` or ``fp32`` to force a graph.
        **options: the engine's own options (e.g. ``threads`` for ONNX Runtime).

    Raises:
        RtposeError: unknown engine or precision, a runtime that is not installed, or a
            graph that does not reproduce the export's reference outputs on this machine.
    """
    import importlib

    if name not in ENGINES:
        raise RtposeError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise RtposeError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    module_name, cls_name = ENGINES[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    engine = cls(export_dir, precision=precision, **options)
    engine.warmup()
    if engine.check is None:  # ort-cpu has checked the graph it chose already
        engine.self_check()
    return engine
