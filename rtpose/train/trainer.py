"""Train a top-down ID model: the centroid net, then the centered-instance net.

The model directory holds everything the exporter needs and everything a person needs
to trust the model: the resolved config, ``model.json`` (skeleton, classes, frame size,
geometry, training summary), and per network ``best.pt``, ``last.pt``,
``training_log.csv`` and ``loss.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from rtpose import __version__
from rtpose.data.anchors import attach_anchors, hidden_anchors
from rtpose.data.augment import AugmentParams
from rtpose.data.proximity import distance_split, median_size
from rtpose.data.labels import class_names, load_labels, node_names, pooled_user_frames, user_frames
from rtpose.data.samples import (Batch, CentroidSamples, FrameCache, InstanceSamples, fraction_outside_crop,
                                 mirror_order, select_frames, split_frames, suggest_crop_size)
from rtpose.data.targets import map_to_input
from rtpose.errors import RtposeError
from rtpose.nn.models import CentroidArch, InstanceArch, arch_to_dict
from rtpose.nn.peaks import global_peaks, local_peaks, refine
from rtpose.data.selection import beyond_labels, selected_indices
from rtpose.data.video import describe_indices
from rtpose.nn.unet import UNet, UNetSpec, count_parameters
from rtpose.paths import clean_path, portable_data_path
from rtpose.train.config import AugmentConfig, DataConfig, HardKeypointConfig, TrainConfig, UNetConfig
from rich.markup import escape

from rtpose.train.checks import check_config, reuse_problem
from rtpose.train.loop import FitResult, console, fit, say
from rtpose.train.precision import choose_precision
from rtpose.train.distance_report import REPORT, validation_report
from rtpose import jsonsafe

MODEL_INFO = "model.json"


def config_hash(cfg: TrainConfig) -> str:
    """12 hex digits of the SHA-256 of the training recipe: the config without its
    ``output`` folder, with each labels file reduced to its name, so that the same config
    hashes the same on every machine and in every run folder."""
    d = cfg.model_dump(mode="json")
    d.pop("output", None)
    if d["instance"].get("distinct_nodes") is None:  # configs from before the option hash as they did
        d["instance"].pop("distinct_nodes", None)
    data = d["data"]
    data["labels"] = [Path(p).name for p in cfg.data.label_files]
    if data.get("val_labels"):
        data["val_labels"] = Path(data["val_labels"]).name
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _unet_spec(c: UNetConfig) -> UNetSpec:
    return UNetSpec(**c.model_dump())


def _augment(c: AugmentConfig, translate_px: float | None = None) -> AugmentParams:
    d = c.model_dump()
    if translate_px is not None:
        d["translate_px"] = translate_px
    return AugmentParams(**d)


def _mirror_order(cfg: TrainConfig, labels, nodes: list[str]) -> np.ndarray | None:
    """The node order of mirrored instance crops, or None where nothing is mirrored."""
    if not cfg.instance.augment.flip_probability:
        return None
    if cfg.data.symmetries is not None:
        pairs, where = cfg.data.symmetries, "data.symmetries"
    else:
        pairs = [tuple(n.name for n in sym.nodes) for sym in labels.skeletons[0].symmetries]
        where = "the skeleton's symmetries"
    order = mirror_order(nodes, pairs)
    shown = ", ".join(f"{a}/{b}" for a, b in pairs) or "none: every node keeps its name"
    console.print(escape(f"mirrored crops ({cfg.instance.augment.flip_probability:.0%}): left/right pairs from "
                         f"{where}: {shown}"))
    return order


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RtposeError("device: cuda requested but torch sees no CUDA device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batches(samples, batch_size: int) -> list[Batch]:
    idx = list(range(len(samples)))
    return [samples.batch(idx[i: i + batch_size], None) for i in range(0, len(idx), batch_size)]


def _to(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(x).to(device, non_blocking=True)


def confmap_loss(pred: torch.Tensor, target: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """MSE with pixels weighted by ``1 + foreground_weight * target``.

    With small Gaussians nearly every target pixel is zero, so a network that outputs
    zeros everywhere sits in a wide, flat minimum (the "all-zero plateau" where sleap-nn's
    flies13 runs stall). Weighting the pixels near each peak makes leaving it pay from the
    first steps; the optimum is still the Gaussian itself, so peak shapes (and sub-pixel
    refinement) are unchanged.
    """
    err = (pred.float() - target) ** 2
    if foreground_weight:
        err = err * (1.0 + foreground_weight * target)
    return err.mean()


def hard_keypoint_loss(pred: torch.Tensor, target: torch.Tensor, foreground_weight: float,
                       hk: HardKeypointConfig) -> torch.Tensor:
    """Online hard keypoint mining term (OHKM, Chen et al. CVPR 2018; SLEAP's
    ``online_hard_keypoint_mining``), on ``(B, nodes, h, w)`` maps.

    Per crop, each node's weighted MSE (as :func:`confmap_loss`) is compared with the
    easiest node's; nodes at least ``hk.ratio`` times harder count as hard, at least
    ``hk.min_keypoints`` and at most ``hk.max_keypoints`` of them, hardest first. The
    term is ``hk.loss_scale`` times the hard nodes' summed loss over the number of nodes
    (so with three hard nodes of 13 and scale 5 it weighs about as much as the plain
    loss), averaged over crops.
    """
    err = (pred.float() - target) ** 2
    if foreground_weight:
        err = err * (1.0 + foreground_weight * target)
    per_node = err.mean(dim=(2, 3))  # (B, nodes)
    n_nodes = per_node.shape[1]
    easiest = per_node.min(dim=1, keepdim=True).values.clamp(min=1e-12)
    n_hard = (per_node >= hk.ratio * easiest).sum(dim=1)
    n_hard = n_hard.clamp(min=min(hk.min_keypoints, n_nodes), max=min(hk.max_keypoints or n_nodes, n_nodes))
    ranked = per_node.sort(dim=1, descending=True).values
    keep = torch.arange(n_nodes, device=per_node.device)[None] < n_hard[:, None]
    return hk.loss_scale * ((ranked * keep).sum(dim=1) / n_nodes).mean()


def make_centroid_loss(foreground_weight: float):
    def centroid_loss(model, batch: Batch, device):
        pred = model(_to(batch.images, device))
        loss = confmap_loss(pred, _to(batch.confmaps, device), foreground_weight)
        return loss, {"loss": loss.item()}

    return centroid_loss


def make_instance_loss(class_weight: float, foreground_weight: float, hard: HardKeypointConfig | None = None):
    def instance_loss(model, batch: Batch, device):
        cms, logits = model(_to(batch.images, device))
        target = _to(batch.confmaps, device)
        cm_loss = confmap_loss(cms, target, foreground_weight)
        parts = {"confmap": cm_loss.item()}
        loss = cm_loss
        if hard is not None:
            hk = hard_keypoint_loss(cms, target, foreground_weight, hard)
            loss = loss + hk
            parts["hard_keypoints"] = hk.item()
        if logits is not None and class_weight > 0:
            labels = _to(batch.classes, device)
            if (labels >= 0).any():
                ce = F.cross_entropy(logits.float(), labels, ignore_index=-1)
                loss = loss + class_weight * ce
                parts["class"] = ce.item()
        parts["loss"] = loss.item()
        return loss, parts

    return instance_loss


def make_instance_metrics(stride: int, refinement: str):
    """Node error (input px) and identity accuracy on validation crops."""

    def metrics(model, batches: list[Batch], device):
        dists, correct, total = [], 0, 0
        for b in batches:
            cms, logits = model(_to(b.images, device))
            cms = cms.float()
            vals, rows, cols = global_peaks(cms)
            ry, rx = refine(cms, rows.unsqueeze(-1), cols.unsqueeze(-1), refinement)
            xy = np.stack([rx[..., 0].cpu().numpy(), ry[..., 0].cpu().numpy()], -1)
            xy = map_to_input(xy, stride)
            gt = b.points[:, 0]
            d = np.linalg.norm(xy - gt, axis=-1)
            dists.append(d[np.isfinite(d)])
            if logits is not None:
                known = b.classes >= 0
                pred = logits.argmax(-1).cpu().numpy()
                correct += int((pred[known] == b.classes[known]).sum())
                total += int(known.sum())
        d = np.concatenate(dists) if dists else np.array([np.nan])
        out = {"val_dist_p50": float(np.percentile(d, 50)), "val_dist_p95": float(np.percentile(d, 95))}
        if total:
            out["val_id_acc"] = correct / total
        return out

    return metrics


def make_centroid_metrics(stride: int, input_scale: float, refinement: str, k: int, threshold: float):
    """Anchor error in frame pixels after greedy matching, and the share of anchors missed."""

    def metrics(model, batches: list[Batch], device):
        dists, missed, total = [], 0, 0
        for b in batches:
            cm = model(_to(b.images, device)).float()
            vals, rows, cols = local_peaks(cm, k, threshold)
            ry, rx = refine(cm, rows.unsqueeze(1), cols.unsqueeze(1), refinement)
            xy = map_to_input(np.stack([rx[:, 0].cpu().numpy(), ry[:, 0].cpu().numpy()], -1), stride)
            ok = vals.cpu().numpy() > threshold
            for i in range(len(xy)):
                gt = b.points[i, :, 0]
                gt = gt[np.isfinite(gt).all(axis=1)]
                pred = xy[i][ok[i]]
                total += len(gt)
                if len(pred) == 0:
                    missed += len(gt)
                    continue
                d = np.linalg.norm(gt[:, None] - pred[None], axis=-1)
                for _ in range(min(len(gt), len(pred))):
                    r, c = np.unravel_index(np.argmin(d), d.shape)
                    dists.append(d[r, c] / input_scale)
                    d[r, :], d[:, c] = np.inf, np.inf
                missed += max(len(gt) - len(pred), 0)
        d = np.array(dists) if dists else np.array([np.nan])
        return {"val_dist_p50": float(np.median(d)), "val_dist_p95": float(np.percentile(d, 95)),
                "val_missed": missed / max(total, 1)}

    return metrics


def close_weights(closest_px: np.ndarray, size_px: float, data: DataConfig) -> np.ndarray | None:
    """Sampling probabilities: ``data.close_weight`` for samples whose nearest other
    animal is within ``data.close_distance`` animal sizes, 1 for the rest (normalised);
    None when nothing is weighted."""
    if data.close_weight == 1.0 or not np.isfinite(size_px):
        return None
    w = np.where(closest_px <= data.close_distance * size_px, data.close_weight, 1.0)
    return w / w.sum()


def _draw(rng: np.random.Generator, n: int, size: int, p: np.ndarray | None) -> np.ndarray:
    return rng.integers(0, n, size) if p is None else rng.choice(n, size, p=p)


def centroid_arch(cfg: TrainConfig) -> CentroidArch:
    """The centroid network's architecture as ``cfg`` says."""
    return CentroidArch(unet=_unet_spec(cfg.centroid.unet), input_scale=cfg.centroid.input_scale,
                        sigma=cfg.centroid.sigma)


def reuse_centroid(source: Path, out_dir: Path, arch: CentroidArch) -> FitResult:
    """Take the centroid network of an earlier model dir (``centroid.reuse_from``) instead
    of training one: experiments on the centered-instance network then cost only its
    own time. The architecture must be the one this config asks for.

    Raises:
        RtposeError: the source has no centroid checkpoint, or another architecture (``reuse_problem``).
    """
    problem = reuse_problem(source, arch)
    if problem:
        raise RtposeError(f"centroid.reuse_from: {problem}")
    ckpt_path = source / "centroid" / "best.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt_path, out_dir / "best.pt")
    src = json.loads((source / MODEL_INFO).read_text()).get("centroid", {}) if (source / MODEL_INFO).exists() else {}
    say("centroid", f"reused from {source} (not trained here)")
    metrics = {k: v for k, v in src.items() if k.startswith("val_")}
    return FitResult(int(src.get("epochs", 0)), int(src.get("best_epoch", ckpt.get("epoch", -1))), math.nan,
                     metrics, f"reused from {source}", 0.0)


def _describe(name: str, spec: UNetSpec, model: torch.nn.Module) -> None:
    rf = UNet(spec).receptive_field()
    say(name, f"UNet filters {spec.filters} x{spec.filters_rate:g}, max stride {spec.max_stride}, "
                  f"output stride {spec.output_stride}, receptive field {rf} px, "
                  f"{count_parameters(model) / 1e6:.2f} M parameters")


def time_plan(cfg: TrainConfig, setup_s: float, asked_minutes: float | None = None, before_s: float = 0.0) -> str:
    """The line that says, as training starts, how the run's time is spent.

    Args:
        cfg: the run's config (``budget_minutes``, each network's ``optim.max_minutes``).
        setup_s: seconds :func:`train` spent before the first network (labels, frames,
            precision choice), measured.
        asked_minutes: ``rtpose train LABELS.slp --minutes N``'s N; None for a config run.
        before_s: seconds the command spent before :func:`train` (deriving the config,
            timing steps), measured.

    Returns:
        e.g. ``time: --minutes 1.5 = 0.35 min deriving + 0.10 setup (both spent) + 0.80
        training (centroid up to 0.20, instance the rest) + ~0.25 kept for the final
        report``; with a config's ``budget_minutes`` the report after it is extra.
    """
    c_max = cfg.centroid.optim.max_minutes
    setup = setup_s / 60
    if not cfg.budget_minutes:
        i_max = cfg.instance.optim.max_minutes
        limits = ", ".join(f"{net} up to {m:.2f} min" for net, m in (("centroid", c_max), ("instance", i_max)) if m)
        return (f"time: {setup:.2f} min setup spent (labels, frames, precision choice); training "
                f"{'(' + limits + ') ' if limits else ''}without a run budget (budget_minutes unset); "
                "the final report after it is extra")
    training = max(cfg.budget_minutes - setup, 0.1)  # the instance net gets at least 0.1 min
    nets = f"centroid up to {min(c_max, training):.2f}, instance the rest" if c_max else "centroid, then instance"
    middle = f"{setup:.2f} setup (labels, frames, precision choice) + {training:.2f} training ({nets})"
    if asked_minutes:
        report = max(asked_minutes - before_s / 60 - cfg.budget_minutes, 0.0)
        return (f"time: --minutes {asked_minutes:g} = {before_s / 60:.2f} min deriving + {middle} + "
                f"~{report:.2f} kept for the final report (deriving and setup spent, measured)")
    return (f"time: budget_minutes {cfg.budget_minutes:g} = {middle} (setup spent, measured); the final report "
            "after it is extra")


def _note_selections_beyond_labels(data: DataConfig, frames: list) -> None:
    """Say so when train_frames or val_frames reach outside the labelled frames' span (one video)."""
    if len({f.video_path for f in frames}) != 1:
        return
    labelled = {f.frame_idx for f in frames}
    for key in ("train_frames", "val_frames"):
        text = getattr(data, key)
        note = beyond_labels(text, labelled)
        if note:
            used = describe_indices(sorted(selected_indices(text, labelled)))
            console.print(escape(f"note: data.{key} {text!r} {note}: it selects the labelled frames {used}"))


def train(cfg: TrainConfig, output: str | Path | None = None, resume: bool = False, progress: bool = True,
          asked_minutes: float | None = None, before_s: float = 0.0) -> Path:
    """Train both networks as ``cfg`` says; returns the model directory.

    ``asked_minutes`` and ``before_s`` (``rtpose train LABELS.slp --minutes N``: N, and
    the seconds spent deriving the config) only complete the printed time plan
    (:func:`time_plan`) and ``model.json``'s ``time``.
    """
    out = Path(output or cfg.output)
    t_start = time.monotonic()
    check_config(cfg)  # what the values name (labels, nodes, frames): `rtpose train` has said it with file and line
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)

    label_files = cfg.data.label_files
    labels_path = label_files[0] if len(label_files) == 1 else ", ".join(label_files)
    labels, frames = pooled_user_frames(label_files, cfg.data.classes)
    nodes = node_names(labels)
    # None: the centre of each instance's visible-node bounding box
    anchor = nodes.index(cfg.data.anchor_part) if cfg.data.anchor_part is not None else None
    classes = cfg.data.classes or class_names(labels)
    if cfg.data.val_labels:
        val_labels = load_labels(cfg.data.val_labels)
        val_frames_all = user_frames(val_labels, cfg.data.val_labels, classes)
        train_frames, _ = split_frames(frames, cfg.data.train_frames, None, None, cfg.seed)
        _, val_frames = split_frames(val_frames_all, None, cfg.data.val_frames, None, cfg.seed) \
            if cfg.data.val_frames else (None, val_frames_all)
    else:
        if not frames:
            raise RtposeError(f"{labels_path}: no user-labeled instances to train on")
        train_frames, val_frames = split_frames(frames, cfg.data.train_frames, cfg.data.val_frames,
                                                cfg.data.val_fraction, cfg.seed)
        if cfg.data.val_frames is not None and cfg.data.train_frames is not None:
            overlap = len(select_frames(frames, cfg.data.train_frames)) - len(train_frames)
            if overlap:
                console.print(escape(f"{overlap} frame{'s' if overlap != 1 else ''} selected by both "
                                     "data.train_frames and data.val_frames: kept for validation only"))
        _note_selections_beyond_labels(cfg.data, frames)
    with_id = cfg.instance.class_head is not None
    if with_id:
        if not classes:
            raise RtposeError(f"{labels_path}: the identity head needs tracks, and the labels have none "
                              "(set instance.class_head: null to train without identities)")
        untracked = sum(int((f.classes < 0).sum()) for f in train_frames)
        if untracked:
            raise RtposeError(f"{labels_path}: {untracked} training instances have no track; the identity head "
                              "needs every instance on a track (or set instance.class_head: null)")
    console.print(escape(f"{len(train_frames)} training frames, {len(val_frames)} validation frames, "
                  f"{len(nodes)} nodes, classes {classes or 'none'}; device {device}"))

    cache = FrameCache(train_frames + val_frames)
    frame_h, frame_w = next(iter(cache.images.values())).shape
    hidden = hidden_anchors(train_frames + val_frames, anchor)
    if cfg.data.missing_anchor == "estimate" and anchor is not None:
        pooled = attach_anchors(train_frames + val_frames, anchor, (frame_h, frame_w))
        train_frames, val_frames = pooled[:len(train_frames)], pooled[len(train_frames):]
    if hidden:
        n_inst = sum(len(f.points) for f in train_frames + val_frames)
        where = "estimated from the visible nodes" if cfg.data.missing_anchor == "estimate" else \
            "the centre of the visible nodes' bounding box"
        console.print(escape(f"anchor {cfg.data.anchor_part} hidden in {hidden} of the {n_inst} "
                             f"training and validation instances: there, {where} "
                             f"(data.missing_anchor: {cfg.data.missing_anchor})"))

    # ---- centroid network
    c_spec = _unet_spec(cfg.centroid.unet)
    c_arch = centroid_arch(cfg)
    multiple = c_spec.max_stride
    c_aug = _augment(cfg.centroid.augment)
    c_train = CentroidSamples(train_frames, cache, anchor, cfg.centroid.input_scale, cfg.centroid.sigma,
                              c_spec.output_stride, multiple, c_aug)
    c_val = CentroidSamples(val_frames, cache, anchor, cfg.centroid.input_scale, cfg.centroid.sigma,
                            c_spec.output_stride, multiple, c_aug) if val_frames else None
    max_instances = max(len(f.points) for f in train_frames)

    # ---- instance network geometry (checked before spending time on the centroid)
    i_spec = _unet_spec(cfg.instance.unet)
    suggested, radius = suggest_crop_size(train_frames, anchor, i_spec.max_stride)
    crop = cfg.instance.crop_size or suggested
    if crop % i_spec.max_stride or crop % 2:
        raise RtposeError(f"instance.crop_size: {crop} must be even and a multiple of the max stride "
                          f"{i_spec.max_stride}")
    outside = fraction_outside_crop(train_frames, anchor, crop)
    console.print(f"crop size {crop} ({suggested} would hold every labelled node: the farthest is "
                  f"{radius:.0f} px from the anchor)")
    if outside > 0:
        console.print(f"[yellow]warning:[/] {outside:.2%} of labeled nodes fall outside a {crop} px crop "
                      f"centred on the anchor; they will be missed (crop_size {suggested} holds them all)")

    i_arch = InstanceArch(unet=i_spec, crop_size=crop, sigma=cfg.instance.sigma, n_nodes=len(nodes),
                          n_classes=len(classes) if with_id else 0,
                          class_units=cfg.instance.class_head.units if with_id else 64,
                          class_layers=cfg.instance.class_head.layers if with_id else 3)
    chosen = choose_precision(cfg.precision, device, i_arch.build,
                              (cfg.instance.optim.batch_size, i_spec.in_channels, crop, crop))
    precision = chosen.precision
    console.print(escape(f"precision {precision} ({chosen.reason})"))

    out.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_copy(deep=True)
    resolved.instance.crop_size = crop
    saved = json.loads(resolved.model_dump_json())
    for key in ("labels", "val_labels"):  # ${RTPOSE_DATA}/..., as in the configs that ship
        value = saved["data"].get(key)
        if value:
            saved["data"][key] = [portable_data_path(v) for v in value] if isinstance(value, list) \
                else portable_data_path(value)
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    torch.manual_seed(cfg.seed)

    size_px = median_size([p for f in train_frames for p in f.points])
    c_weights = close_weights(c_train.closest, size_px, cfg.data)
    if c_weights is not None:
        n_close = int(np.sum(c_train.closest <= cfg.data.close_distance * size_px))
        console.print(f"close encounters (anchors within {cfg.data.close_distance:g} x {size_px:.0f} px): "
                      f"{n_close} of {len(c_train)} training frames, drawn {cfg.data.close_weight:g}x as often")

    c_model = c_arch.build()
    _describe("centroid", c_spec, c_model)
    c_bs = cfg.centroid.optim.batch_size
    t_fit = time.monotonic()
    console.print(escape(time_plan(cfg, t_fit - t_start, asked_minutes, before_s)))
    if cfg.centroid.reuse_from:
        c_result = reuse_centroid(Path(cfg.centroid.reuse_from), out / "centroid", c_arch)
    else:
        c_result = fit(
            "centroid", c_model, out / "centroid",
            sample_batch=lambda rng: c_train.batch(_draw(rng, len(c_train), c_bs, c_weights), rng),
            n_train=len(c_train), val_batches=_batches(c_val, 16) if c_val else [],
            loss_fn=make_centroid_loss(cfg.centroid.foreground_weight),
            metrics_fn=make_centroid_metrics(c_spec.output_stride, cfg.centroid.input_scale, cfg.refinement,
                                             max_instances, cfg.centroid.threshold),
            optim=cfg.centroid.optim, device=device, seed=cfg.seed,
            extra_checkpoint={"arch": arch_to_dict(c_arch), "kind": "centroid"}, resume=resume, progress=progress,
            precision=precision,
        )

    i_aug = _augment(cfg.instance.augment)
    i_train = InstanceSamples(train_frames, cache, anchor, crop, cfg.instance.sigma, i_spec.output_stride,
                              cfg.instance.center_jitter_px, i_aug, _mirror_order(cfg, labels, nodes))
    i_val = InstanceSamples(val_frames, cache, anchor, crop, cfg.instance.sigma, i_spec.output_stride,
                            0.0, i_aug) if val_frames else None
    i_weights = close_weights(i_train.closest, size_px, cfg.data)
    # the instance net's initial weights are its own seed's draw, whether the centroid net
    # was trained before it or reused (centroid.reuse_from experiments compare with full runs)
    torch.manual_seed(cfg.seed + 1)
    i_model = i_arch.build()
    _describe("instance", i_spec, i_model)
    i_bs = cfg.instance.optim.batch_size
    i_optim = cfg.instance.optim
    if cfg.budget_minutes:  # the instance net gets what is left of the run's budget
        spent = (time.monotonic() - t_start) / 60  # setup and the centroid net
        if resume:  # the centroid net's minutes before the run was stopped count too (its clock holds them all)
            spent = (t_fit - t_start) / 60 + c_result.elapsed_s / 60
        left = max(cfg.budget_minutes - spent, 0.1)
        i_optim = i_optim.model_copy(update={"max_minutes": min(i_optim.max_minutes or math.inf, left)})
        say("instance", f"{i_optim.max_minutes:.1f} min of the run's {cfg.budget_minutes:g} min budget left")
    class_weight = cfg.instance.class_head.loss_weight if with_id else 0.0
    i_result = fit(
        "instance", i_model, out / "instance",
        sample_batch=lambda rng: i_train.batch(_draw(rng, len(i_train), i_bs, i_weights), rng),
        n_train=len(i_train), val_batches=_batches(i_val, 32) if i_val else [],
        loss_fn=make_instance_loss(class_weight, cfg.instance.foreground_weight, cfg.instance.hard_keypoints),
        metrics_fn=make_instance_metrics(i_spec.output_stride, cfg.refinement),
        optim=i_optim, device=device, seed=cfg.seed + 1,
        extra_checkpoint={"arch": arch_to_dict(i_arch), "kind": "instance"}, resume=resume, progress=progress,
        precision=precision,
    )

    training_s = time.monotonic() - t_fit
    earlier_s = c_result.wall_before_s + i_result.wall_before_s
    skeleton = labels.skeletons[0]
    info = {
        "rtpose_version": __version__,
        "config_hash": config_hash(resolved),
        "labels": clean_path(label_files[0]),  # ${RTPOSE_DATA}/.. expanded: stored without ..
        "label_files": [clean_path(p) for p in label_files],
        "node_names": nodes,
        "edges": [[nodes.index(e.source.name), nodes.index(e.destination.name)] for e in skeleton.edges],
        "class_names": classes if with_id else [],
        "anchor_part": cfg.data.anchor_part,
        "frame_height": int(frame_h),
        "frame_width": int(frame_w),
        "input_scale": cfg.centroid.input_scale,
        "crop_size": crop,
        "centroid_output_stride": c_spec.output_stride,
        "instance_output_stride": i_spec.output_stride,
        "centroid_threshold": cfg.centroid.threshold,
        "point_threshold": cfg.instance.point_threshold,
        "refinement": cfg.refinement,
        **({"distinct_nodes": cfg.instance.distinct_nodes.to_info(nodes)} if cfg.instance.distinct_nodes else {}),
        "max_instances": max_instances,
        "animal_size_px": round(size_px, 2),  # unit of the distance bins (rtpose.data.proximity)
        "train_frames": len(train_frames),
        "val_frames": len(val_frames),
        "device": str(device),
        "precision": precision,
        "precision_choice": {"reason": chosen.reason, "step_ms": chosen.step_ms, "timings_ms": chosen.timings_ms},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # every session of the run: a resumed run adds its networks' time before the stop
        "wall_minutes": round((time.monotonic() - t_start + earlier_s) / 60, 2),
        # where this session's time went (minutes): the report says it again at the end;
        # "earlier_sessions": the networks' training before a resume
        "time": {"minutes_asked": asked_minutes, "deriving": round(before_s / 60, 3),
                 "setup": round((t_fit - t_start) / 60, 3), "training": round(training_s / 60, 3),
                 "earlier_sessions": round(earlier_s / 60, 3)},
        "centroid": {"epochs": c_result.epochs, "best_epoch": c_result.best_epoch, "stopped": c_result.stopped,
                     "wall_minutes": round(c_result.wall_s / 60, 2), **c_result.best_metrics},
        "instance": {"epochs": i_result.epochs, "best_epoch": i_result.best_epoch, "stopped": i_result.stopped,
                     "wall_minutes": round(i_result.wall_s / 60, 2), **i_result.best_metrics},
    }
    (out / MODEL_INFO).write_text(jsonsafe.dumps(info, indent=2))
    if val_frames:
        console.print(f"validation frames, whole pipeline (written to {out / REPORT}):")
        split = distance_split(recorded=info, recorded_from=f"{out / MODEL_INFO}")  # as eval reads the export's
        files = [cfg.data.val_labels] if cfg.data.val_labels else label_files
        held = describe_indices([f.frame_idx for f in val_frames])
        validation_report(out, val_frames, cache, classes if with_id else [], split, console,
                          ground_truth=f"validation frames {held} ({len(val_frames)}) of "
                                       f"{', '.join(Path(f).name for f in files)}")
    console.print(f"model written to {out} ({info['wall_minutes']:.1f} min)")
    return out
