"""``rtpose train LABELS.slp``: a whole training config derived from the labels and the machine.

What the labels decide (rtpose.data.labelstats, torch-free): anchor part, crop size,
centroid input scale, sigmas, identity head, validation block, training frames, batch
sizes. What the machine decides: the time split and the epoch length, planned from the
seconds per training step measured here on a few real batches, then re-planned by the
fit loop from the observed rate every epoch (``optim.epoch_seconds``), so a machine that
slows down mid-run still ends on time with the same schedule.

Every derived setting is printed with its reason and lands in the model directory's
``config.yaml``: edit it and rerun with ``rtpose train CONFIG.yaml``.

Frames are trained grey: the export contract (rtpose.export.spec) is a ``(B, 1, H, W)``
uint8 grey frame, which is what lab cameras deliver; colour video is converted to
luminance (OpenCV's BGR2GRAY) here and in every engine alike.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtpose.data import labelstats as ls
from rtpose.data.anchors import attach_anchors
from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.errors import RtposeError
from rtpose.machine import cpu_name
from rtpose.nn.unet import UNetSpec
from rtpose.train.checks import check_config
from rtpose.train.config import TrainConfig
from rtpose.config import apply_overrides, override_lines, validate

DEFAULT_MINUTES = 20.0  # what a 2-core laptop finishes in about 20 minutes
REPORT_RESERVE_S = 45.0  # export + predict + score the validation block at the end
CENTROID_SHARE = 0.25  # of the training time; the instance net gets the rest (and what early stopping leaves)
TARGET_EPOCHS = {"centroid": 60, "instance": 80}  # validations per budget (patience is in epochs)
MIN_EPOCH_STEPS = 20  # a slow machine gets longer epochs rather than a learning rate halved every few steps
LATENCY_REFERENCE = Path(__file__).resolve().parents[2] / "models" / "flies13" / "rtpose.json"
BASE_UNET = {"filters": 16, "filters_rate": 2.0, "down_blocks": 3, "up_blocks": 3, "stem_stride": 2}
# Crops above this many pixels run the instance net behind a stride-4 stem (output stride
# 4): its first level then stays at most 80 px across, as flies13's 144-px crop is 72 px
# behind its stride-2 stem. mice2 (192-px crops): 2.1x flies13's cost with a stride-2
# stem, 1.2x with stride 4, and node error p90 7.6-9.7 px on 60-69 in four runs against
# 12.2-12.7 px in three (README, "Training from labels alone").
STEM4_ABOVE_CROP = 160


# ---- cost model -------------------------------------------------------------------------

def unet_macs(spec: UNetSpec, height: int, width: int, n_out: int) -> float:
    """Multiply-accumulates of one forward pass on a (height, width) input, conv layers
    only (3x3 convs, the 1x1 output head), from the layer geometry of rtpose.nn.unet."""
    macs = 0.0
    h, w, c_in = height, width, spec.in_channels
    if spec.stem_stride > 1:
        h, w = math.ceil(h / spec.stem_stride), math.ceil(w / spec.stem_stride)
        macs += h * w * c_in * spec.filters * 9
        c_in = spec.filters
    sizes = []
    for level in range(spec.down_blocks):
        c = spec.channels(level)
        macs += h * w * 9 * (c_in * c + (spec.convs_per_block - 1) * c * c)
        sizes.append((h, w))
        c_in, h, w = c, h // 2, w // 2
    cb = spec.bottleneck_channels
    macs += h * w * 9 * (c_in * cb + (spec.convs_per_block - 1) * cb * cb)
    c_in = cb
    for j in range(spec.up_blocks):
        level = spec.down_blocks - 1 - j
        c = spec.channels(level)
        h, w = sizes[level]
        macs += h * w * 9 * ((c_in + c) * c + (spec.n_decoder_convs - 1) * c * c)
        c_in = c
    return macs + h * w * c_in * n_out


def frame_macs(arch: dict[str, Any], frame_hw: tuple[int, int], n_instances: int, n_nodes: int) -> float:
    """Per-frame MACs of a top-down model: the centroid net on the scaled frame plus the
    instance net on ``n_instances`` crops. ``arch``: rtpose.json's ``architecture``."""
    c, i = arch["centroid"], arch["instance"]
    cs, isp = UNetSpec(**c["unet"]), UNetSpec(**i["unet"])
    m = cs.max_stride
    h = math.ceil(frame_hw[0] * c["input_scale"] / m) * m
    w = math.ceil(frame_hw[1] * c["input_scale"] / m) * m
    return unet_macs(cs, h, w, 1) + n_instances * unet_macs(isp, i["crop_size"], i["crop_size"], n_nodes)


def reference_macs() -> tuple[float, str] | None:
    """Per-frame MACs of the shipped models/flies13 (the live budget), when at hand."""
    if not LATENCY_REFERENCE.exists():
        return None
    spec = json.loads(LATENCY_REFERENCE.read_text())
    macs = frame_macs(spec["architecture"], (spec["frame_height"], spec["frame_width"]), spec["max_instances"],
                      len(spec["node_names"]))
    return macs, f"models/flies13 ({spec['frame_height']}x{spec['frame_width']}, {spec['max_instances']} animals)"


# ---- derivation ---------------------------------------------------------------------------

def _pow2_at_most(n: float, cap: int) -> int:
    b = 1
    while b * 2 <= min(n, cap):
        b *= 2
    return b


def _video_colour(path: Path) -> str:
    """'grey', 'grey (stored as N channels)' or 'colour', from the first frame."""
    if path.suffix.lower() in (".slp", ".h5", ".hdf5"):  # images embedded in a package
        import sleap_io as sio

        video = next(v for v in sio.load_slp(str(path)).videos if type(v.backend).__name__ == "HDF5Video")
        index = sorted(getattr(video.backend, "frame_map", {}) or [0])[0]
        frame, ok = np.asarray(video[index]), True
    else:
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        cap.release()
    if not ok or frame.ndim == 2 or frame.shape[2] == 1:
        return "grey"
    if all(np.array_equal(frame[..., 0], frame[..., k]) for k in range(1, frame.shape[2])):
        return f"grey (stored as {frame.shape[2]} channels)"
    return "colour"


class Derivation:
    """The derived config tree and, per setting, the value and why."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.reasons: list[tuple[str, str, str]] = []

    def set(self, key: str, value: Any, why: str = "", show: Any = None) -> None:
        node = self.tree
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
        if why:
            self.reasons.append((key, str(value if show is None else show), why))

    def note(self, key: str, value: str, why: str) -> None:
        self.reasons.append((key, value, why))


def default_output(labels_path: str | Path) -> str:
    """The model directory of ``rtpose train LABELS.slp`` without ``-o``: ``runs/<labels name>``."""
    return f"runs/{Path(labels_path).name.split('.')[0]}"


def derive(labels_path: str | Path, minutes: float = DEFAULT_MINUTES, output: str | Path | None = None,
           overrides: list[str] | None = None, measure: bool = True,
           t_start: float | None = None) -> tuple[TrainConfig, Derivation]:
    """A validated training config for ``labels_path`` and the reasons for each setting.

    ``overrides`` (``dotted.key=value``) are applied last and win over every derived
    value. ``measure``: time a few training steps here to plan epochs (else a nominal
    0.1 s per step, for tests of the derivation alone). ``t_start``: ``time.monotonic()``
    when the command started; the time spent before training counts against ``minutes``.

    Raises:
        RtposeError: unreadable or bad labels (see labelstats.check_labels), a video not
            found, or an override that does not validate.
    """
    t_start = time.monotonic() if t_start is None else t_start
    labels_path = Path(labels_path)
    if minutes <= 0:
        raise RtposeError(f"--minutes must be positive, got {minutes:g}")
    labels = load_labels(labels_path)
    nodes = node_names(labels)
    classes = class_names(labels)
    frames = user_frames(labels, labels_path, classes)
    override_keys = {o.split("=", 1)[0].strip() for o in overrides or []}
    crop_given = "instance.crop_size" in override_keys
    try:
        ls.check_labels(frames, nodes, classes, labels_path)
    except RtposeError:
        if not (crop_given and frames and sum(len(f.points) for f in frames)):
            raise
    stats = ls.label_stats(frames, nodes, classes)
    d = Derivation()
    d.set("data.labels", str(labels_path.resolve()))

    # -- frames: a validation block, near copies thinned out of the rest
    val = ls.validation_block(frames)
    val_keys = {(f.video_path, f.frame_idx) for f in val}
    rest = [f for f in frames if (f.video_path, f.frame_idx) not in val_keys]
    size = stats.animal_size_px if np.isfinite(stats.animal_size_px) else float("nan")
    train = ls.thin_near_duplicates(rest, size) if np.isfinite(size) else rest
    multi_video = len(stats.videos) > 1
    if val:
        d.set("data.val_frames", ls.format_selection([f.frame_idx for f in val]),
              f"the last {len(val)} of {len(frames)} labelled frames, a consecutive block (not random frames)")
    else:
        d.set("data.val_frames", None, "fewer than 2 labelled frames: no validation (scores are on training frames)")
    if multi_video:
        d.set("data.train_frames", None, f"{len(stats.videos)} videos: frame selections name indices in every "
                                         "video, so all frames outside the validation indices train")
    else:
        d.set("data.train_frames", ls.format_selection([f.frame_idx for f in train]),
              f"{len(train)} of {len(rest)} frames: animals that did not move since the last kept frame "
              f"are kept 1 in {ls.DUPLICATE_KEEP_EVERY}" if len(train) < len(rest) else f"all {len(rest)} others")
        rest = train

    # -- anchor, crop and geometry
    frame_hw = _frame_size(frames[0].video_path)
    if np.isfinite(size):
        anchor, reach = ls.choose_anchor(rest, stats)
    else:
        anchor, reach = (nodes[0] if len(nodes) == 1 else None), float("nan")
    vis = stats.visibility[nodes.index(anchor)] if anchor is not None else 1.0
    if anchor is not None and vis < 1.0:  # where the node is hidden, where the animals put it
        rest = attach_anchors(rest, nodes.index(anchor), frame_hw)
        reach = ls.anchor_reach(rest, nodes.index(anchor))
    d.set("data.anchor_part", anchor,
          f"visible in {vis:.0%} of instances, the smallest crop among the most visible nodes "
          f"(reach {reach:.0f} px)" if anchor is not None and np.isfinite(reach) else
          "no node is visible in half the instances: the centre of the visible nodes' bounding box"
          if anchor is None else "the only node", show=anchor if anchor is not None else "bounding-box centre")
    if anchor is not None and vis < 1.0:
        d.set("data.missing_anchor", "estimate", f"{anchor} is hidden in {1 - vis:.0%} of instances: its place there "
                                                 "is estimated from the visible nodes, not their bounding-box centre")
    jitter = round(float(np.clip(size / 30, 2.0, 8.0)), 1) if np.isfinite(size) else 4.0
    inst_unet = dict(BASE_UNET)
    crop = ls.crop_size(reach, 16) if np.isfinite(reach) else 16 * 8
    if crop > STEM4_ABOVE_CROP:  # big animals: a stride-4 stem keeps the cost of the crop at that of a 1/2 crop
        inst_unet["stem_stride"] = 4
        crop = ls.crop_size(reach, 32)
    ispec = UNetSpec(**inst_unet)
    from rtpose.nn.unet import UNet  # receptive field from the layer geometry (torch module, no weights run)

    while UNet(ispec).receptive_field() < crop and ispec.down_blocks < 5:
        inst_unet["down_blocks"] += 1
        inst_unet["up_blocks"] += 1
        ispec = UNetSpec(**inst_unet)
        crop = ls.crop_size(reach, ispec.max_stride)
    if not np.isfinite(size):
        size = crop / 2.0
    d.set("instance.crop_size", crop, f"holds 99% of animals around the anchor (reach {reach:.0f} px), "
                                      f"a multiple of the max stride {ispec.max_stride}")
    d.set("instance.center_jitter_px", jitter, "a centroid error of ~1/30 of the animal")
    d.set("instance.sigma", ls.instance_sigma(size), f"in frame px: animal length {size:.0f} px (median bounding-box "
                                                     f"diagonal) / {ls.INSTANCE_SIGMA_DIVISOR:g}")
    stem = (f"a stride-4 stem for a crop above {STEM4_ABOVE_CROP} px (it then costs what a crop of half "
             "the side would behind a stride-2 stem), "
            if ispec.stem_stride == 4 else "")
    d.set("instance.unet", inst_unet, f"{stem}output stride {ispec.output_stride}, receptive field "
                                      f"{UNet(ispec).receptive_field()} px >= crop", show=_unet_text(ispec))

    colour = _video_colour(frames[0].video_path)
    d.note("frames", f"{frame_hw[0]}x{frame_hw[1]} (HxW) {colour}",
           "trained grey: the export takes (B, 1, H, W) uint8 grey frames, as lab cameras deliver them" +
           ("; colour is converted to luminance everywhere alike" if colour == "colour" else ""))
    cspec = UNetSpec(**BASE_UNET)
    gap = ls.anchor_gap(rest, nodes.index(anchor) if anchor is not None else None)
    scale = ls.centroid_input_scale(size, frame_hw, anchor_gap_px=gap, output_stride=cspec.output_stride)
    gap_text = ""
    if np.isfinite(gap):
        on_map = gap * scale / cspec.output_stride
        coarser = f"; 1/{round(2 / scale)} would give {on_map / 2:.1f}" if size * scale / 2 >= ls.MIN_ANIMAL_PX else ""
        gap_text = (f"; the closest animals' anchors (5th percentile) {gap:.0f} px apart, {on_map:.1f} px on the "
                    f"centroid confidence map (>= {ls.MIN_ANCHOR_GAP_MAP_PX:g}{coarser})")
    d.set("centroid.input_scale", scale, f"a typical animal {size * scale:.0f} px across at this scale "
                                         f"(>= {ls.MIN_ANIMAL_PX:g} px){gap_text}; receptive field "
                                         f"{UNet(cspec).receptive_field()} px >= animal")
    d.set("centroid.sigma", ls.centroid_sigma(size, scale), "in px of the scaled frame: a tenth of the scaled animal")
    d.set("centroid.unet", dict(BASE_UNET), show=_unet_text(cspec))

    # -- identity
    with_id = bool(classes) and stats.tracked == stats.n_instances
    if with_id:
        d.set("instance.class_head", {"units": 64, "layers": 3, "loss_weight": 0.01},
              f"every instance is on a track: classes {', '.join(classes)}", show="identity head")
    else:
        d.set("instance.class_head", None, "no tracks: no identity head", show="none")
    n_train_inst = sum(len(f.points) for f in rest)
    paste = 0.5 if stats.max_instances >= 2 and n_train_inst >= 2 else 0.0
    d.set("instance.augment", {"rotation_deg": 180, "scale": [0.9, 1.1], "neighbour_probability": paste,
                               "neighbour_distance_px": [round(0.5 * size), round(0.9 * size)]},
          "half the crops get another animal pasted beside the centred one (touching animals)" if paste
          else "one animal per frame: no neighbour pasting", show=f"rotation 180, scale 0.9-1.1, neighbour {paste:g}")
    d.set("centroid.augment", {"rotation_deg": 180, "scale": [0.9, 1.1], "translate_px": 8})

    # -- batches and time
    # batches of about an eighth of the training set, up to flies13's 8 and 16: a small
    # set gets more (cheaper) steps in the same time
    c_bs = _pow2_at_most(max(len(rest) / 8, 1), 8)
    i_bs = _pow2_at_most(max(n_train_inst / 8, 1), 16)
    total_s = minutes * 60
    d.set("output", str(output) if output else default_output(labels_path))
    d.set("seed", 0)
    tree = apply_overrides(d.tree, list(overrides or []))
    cfg = _validate(tree, _source(overrides))
    # what a --set names (a node, frames, a labels file) is checked before it is timed
    check_config(cfg, "derived config", override_lines(overrides or []))
    ref = reference_macs()
    if ref:  # of the networks as they will be trained (--set included)
        arch = {"centroid": {"unet": cfg.centroid.unet.model_dump(), "input_scale": cfg.centroid.input_scale},
                "instance": {"unet": cfg.instance.unet.model_dump(), "crop_size": cfg.instance.crop_size}}
        macs = frame_macs(arch, frame_hw, max(stats.max_instances, len(classes) if with_id else 0, 1), len(nodes))
        d.note("cost", f"{macs / 1e9:.2f} GMAC/frame", f"{macs / ref[0]:.2f}x {ref[1]} ({ref[0] / 1e9:.2f} GMAC); "
               "the report times it")
    step = measure_step_seconds(cfg, rest, c_bs, i_bs) if measure else (0.1, 0.1, 0.01, {})
    c_step, i_step, decode_s, by_threads = step
    if len(by_threads) > 1:
        threads = min(by_threads, key=lambda n: by_threads[n][1])
        d.set("threads", threads, "the faster here: " + ", ".join(
            f"{n} thread{'s' if n > 1 else ''} {v[0] * 1000:.0f} / {v[1] * 1000:.0f} ms per centroid / instance step"
            for n, v in by_threads.items()) + " (on a busy machine one thread can beat two by far)")
    spent_s = time.monotonic() - t_start  # loading, checking, measuring
    setup_s = decode_s * (len(rest) + len(val)) + 10.0
    reserve_s = min(REPORT_RESERVE_S, 0.3 * total_s) + spent_s
    train_s = max(total_s - reserve_s - setup_s, 0.5 * total_s)
    c_s = CENTROID_SHARE * train_s
    for net, bs, secs, step_s, patience in (("centroid", c_bs, c_s, c_step, (5, 15)),
                                            ("instance", i_bs, train_s, i_step, (5, 20))):
        share = secs if net == "centroid" else train_s - c_s
        epoch_s = max(share / TARGET_EPOCHS[net], 2.0)
        steps = max(int(round(epoch_s / step_s)), MIN_EPOCH_STEPS)
        d.set(f"{net}.optim", {"lr": 1e-3, "batch_size": bs, "min_steps_per_epoch": MIN_EPOCH_STEPS,
                               "max_epochs": 100000,
                               "max_minutes": round(secs / 60, 2), "epoch_seconds": round(epoch_s, 1),
                               "plateau_patience": patience[0], "early_stop_patience": patience[1]},
              f"{step_s * 1000:.0f} ms/step measured here: ~{share / step_s:.0f} steps in {share / 60:.1f} min, "
              f"epochs of ~{epoch_s:.0f} s (~{steps} steps, at least {MIN_EPOCH_STEPS}) re-planned from the "
              "observed rate",
              show=f"batch {bs}, {share / 60:.1f} min" + (" (+ what the centroid leaves)" if net == "instance" else ""))
    d.set("budget_minutes", round(max(total_s - reserve_s, 6.0) / 60, 2),
          f"--minutes {minutes:g} less {spent_s:.0f} s spent deriving and ~{reserve_s - spent_s:.0f} s for the "
          "final report")
    tree = apply_overrides(d.tree, list(overrides or []))
    return _validate(tree, _source(overrides)), d


def _source(overrides) -> str:
    """Where a config error comes from: the derivation, or a ``--set`` on top of it."""
    return "derived config with --set " + ", ".join(overrides) if overrides else "derived config"


def _validate(tree: dict, source: str) -> TrainConfig:
    return validate(TrainConfig, tree, source)


def _unet_text(spec: UNetSpec) -> str:
    return (f"UNet {spec.filters}x{spec.filters_rate:g}, max stride {spec.max_stride}, "
            f"output stride {spec.output_stride}")


def _frame_size(video: Path) -> tuple[int, int]:
    from rtpose.data.video import VideoReader

    with VideoReader(video) as r:
        return int(r.height), int(r.width)


def measure_step_seconds(cfg: TrainConfig, frames: list, c_bs: int, i_bs: int, n_frames: int = 6,
                         n_steps: int = 3, max_seconds: float = 4.0
                         ) -> tuple[float, float, float, dict[int, tuple[float, float]]]:
    """Seconds per training step of each network at its batch size (median of up to
    ``n_steps`` after one warm-up step, at most ~``max_seconds`` per network), seconds to
    decode one frame, on a few real training frames, here; with ``cfg.threads`` unset,
    for all cores and for one thread (returned by thread count), the step times being
    those of the thread count with the faster instance step.

    Why one thread: torch's OpenMP threads meet at a barrier after every operation, so
    on a shared machine where another process takes one core the other thread waits,
    and two threads can run many times slower than one."""
    import torch

    from rtpose.data.samples import CentroidSamples, FrameCache, InstanceSamples
    from rtpose.nn.models import CentroidArch, InstanceArch
    from rtpose.train.precision import choose_precision
    from rtpose.train.trainer import _augment, _device, _unet_spec, make_centroid_loss, make_instance_loss

    device = _device(cfg.device)
    candidates = [cfg.threads] if cfg.threads or device.type != "cpu" else \
        sorted({torch.get_num_threads(), 1}, reverse=True)
    pick = [frames[i] for i in np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).astype(int)]
    t0 = time.perf_counter()
    cache = FrameCache(pick)
    decode_s = (time.perf_counter() - t0) / len(pick)
    nodes = len(pick[0].points[0])
    anchor = None
    if cfg.data.anchor_part is not None:
        labels = load_labels(cfg.data.labels, open_videos=False)
        anchor = node_names(labels).index(cfg.data.anchor_part)
    cs, isp = _unet_spec(cfg.centroid.unet), _unet_spec(cfg.instance.unet)
    c_samples = CentroidSamples(pick, cache, anchor, cfg.centroid.input_scale, cfg.centroid.sigma,
                                cs.output_stride, cs.max_stride, _augment(cfg.centroid.augment))
    i_samples = InstanceSamples(pick, cache, anchor, cfg.instance.crop_size, cfg.instance.sigma, isp.output_stride,
                                cfg.instance.center_jitter_px, _augment(cfg.instance.augment))
    n_cls = 2 if cfg.instance.class_head is not None else 0
    i_arch = InstanceArch(isp, cfg.instance.crop_size, cfg.instance.sigma, nodes, n_cls)
    runs = (
        (CentroidArch(cs, cfg.centroid.input_scale, cfg.centroid.sigma).build(), c_samples, c_bs,
         make_centroid_loss(cfg.centroid.foreground_weight)),
        (i_arch.build(), i_samples, i_bs, make_instance_loss(0.01, cfg.instance.foreground_weight)),
    )
    rng = np.random.default_rng(0)
    by_threads: dict[int, tuple[float, float]] = {}
    for n in candidates:
        torch.set_num_threads(n or torch.get_num_threads())
        # the trainer asks the same (cached) question at the thread count it trains with
        precision = choose_precision(cfg.precision, device, i_arch.build,
                                     (i_bs, isp.in_channels, cfg.instance.crop_size, cfg.instance.crop_size)).precision
        c_s, i_s = (_time_steps(model, samples, bs, loss_fn, device, precision, rng, n_cls, n_steps, max_seconds)
                    for model, samples, bs, loss_fn in runs)
        by_threads[n] = (c_s, i_s)
    best = min(by_threads, key=lambda n: by_threads[n][1])
    torch.set_num_threads(best)
    return by_threads[best][0], by_threads[best][1], decode_s, by_threads


def _time_steps(model, samples, bs: int, loss_fn, device, precision: str, rng: np.random.Generator, n_cls: int,
                n_steps: int, max_seconds: float) -> float:
    """Median seconds of a full training step (batch, forward, backward, Adam)."""
    import torch

    from rtpose.train.loop import autocast, to_device

    to_device(model, device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    times: list[float] = []
    t_net = time.perf_counter()
    for k in range(n_steps + 1):
        if times and time.perf_counter() - t_net > max_seconds:
            break  # a slow (or busy) machine: a step or two is measure enough
        t = time.perf_counter()
        batch = samples.batch(rng.integers(0, len(samples), bs), rng)
        if n_cls and batch.classes is not None:
            batch.classes = np.clip(batch.classes, -1, 1)
        with autocast(device, precision):
            loss, _ = loss_fn(model, batch, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def cpu_summary() -> str:
    import torch

    n = torch.get_num_threads()
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {n} thread{'s' if n != 1 else ''}"
