"""A training config's values checked against what they name, before any training work.

Stage 1 (pydantic, ``rtpose.train.config``) checks each value alone as the file loads.
Some values name something outside the file: a labels file, a node of its skeleton, a
track, the frames the labels hold, a model directory, a device. They are checked here,
on the labels' metadata (no video is opened, nothing is trained or written), and every
problem reads like any other config error (``rtpose.config.describe_errors``)::

    train.yaml:10: data.anchor_part: 'thorx' is not a node of the skeleton (did you mean 'thorax'?)
    train.yaml with --set data.anchor_part=thorx: data.anchor_part: ...

``rtpose train`` runs this after loading its config (or deriving one from labels) and
before it claims the model directory; ``rtpose.train.trainer.train`` runs it too, for
callers of the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtpose.config import ConfigError, KeyLines, describe_errors, did_you_mean
from rtpose.data.selection import selected_indices
from rtpose.data.video import describe_indices
from rtpose.errors import RtposeError
from rtpose.paths import no_such_file
from rtpose.train.config import DistinctNodesConfig, TrainConfig

Problem = tuple[tuple[Any, ...], str]  # (key path, message)


def check_config(cfg: TrainConfig, source: str | Path | None = None, lines: KeyLines | None = None) -> None:
    """Raise the first of ``config_problems`` as one line.

    Args:
        cfg: the validated config.
        source: its file (or ``"derived config"``); None: the line names only the field.
        lines: key path -> line, or the ``--set`` that gave the key (``rtpose.config.load_tree``).

    Raises:
        ConfigError: ``source:line: field: message (and N more problems)``.
    """
    problems = config_problems(cfg)
    if problems:
        errors = [{"loc": loc, "msg": msg, "type": "cross_check"} for loc, msg in problems]
        raise ConfigError(describe_errors(errors, source, lines))


def config_problems(cfg: TrainConfig) -> list[Problem]:
    """Every problem of ``cfg``'s values against the labels, model dir and device they name.

    Checked: each labels file (and ``val_labels``) exists and reads as .slp, with one
    skeleton; ``anchor_part``, the ``symmetries`` and ``instance.distinct_nodes`` are
    nodes of it, ``classes`` tracks of the labels; ``train_frames`` and ``val_frames``
    select labelled frames and leave some to train on; ``instance.crop_size`` fits the
    UNet; ``centroid.reuse_from`` holds a centroid net of this architecture; ``device:
    cuda`` exists.

    Returns:
        (key path, message) pairs, in the order of the file; empty when all is well.
    """
    data = cfg.data
    files = data.label_files
    locs = [("data", "labels")] if isinstance(data.labels, str) else [("data", "labels", i) for i in range(len(files))]
    problems: list[Problem] = []
    opened = []
    for loc, path in zip(locs, files):
        labels, problem = _open(path)
        problems += [(loc, problem)] if problem else []
        opened.append((loc, path, labels))
    val = _open(data.val_labels) if data.val_labels else (None, "")
    problems += [(("data", "val_labels"), val[1])] if val[1] else []
    if problems:  # the rest needs the labels
        return problems + _model_problems(cfg)
    nodes = _nodes(opened[0][2])
    for loc, path, labels in [*opened[1:], *([(("data", "val_labels"), data.val_labels, val[0])] if val[0] else [])]:
        if _nodes(labels) != nodes:
            problems.append((loc, f"{path}: skeleton ({', '.join(_nodes(labels))}) differs from {files[0]}'s "
                                  f"({', '.join(nodes)})"))
    if data.anchor_part is not None and data.anchor_part not in nodes:
        problems.append((("data", "anchor_part"), f"{data.anchor_part!r} is not a node of the skeleton"
                                                  f"{did_you_mean(data.anchor_part, nodes)}"))
    seen: set[str] = set()
    for i, pair in enumerate(data.symmetries or []):
        for name in pair:
            if name not in nodes:
                problems.append((("data", "symmetries", i), f"{name!r} is not a node of the skeleton"
                                                            f"{did_you_mean(name, nodes)}"))
            elif name in seen or pair[0] == pair[1]:
                problems.append((("data", "symmetries", i), f"{name!r} is in more than one pair"))
            seen.add(name)
    if cfg.instance.distinct_nodes:
        problems += [(("instance", "distinct_nodes", *loc), msg)
                     for loc, msg in distinct_node_problems(cfg.instance.distinct_nodes, nodes)]
    tracks = list(dict.fromkeys(t.name for _, _, labels in opened for t in labels.tracks))
    for i, name in enumerate(data.classes or []):
        if name not in tracks:
            where = did_you_mean(name, tracks) if tracks else " (the labels have no tracks)"
            problems.append((("data", "classes", i), f"{name!r} is not a track of the labels{where}"))
    return problems + _frame_problems(cfg, opened, val[0]) + _model_problems(cfg)


def distinct_node_problems(distinct: DistinctNodesConfig, nodes: list[str]) -> list[Problem]:
    """The names of ``instance.distinct_nodes`` that are not in ``nodes`` (the skeleton's),
    with key paths inside that section (``("nodes", i)``); before a training, and at an
    export that reads the section from a trained run's ``config.yaml``."""
    return [(("nodes", i), f"{name!r} is not a node of the skeleton{did_you_mean(name, nodes)}")
            for i, name in enumerate(distinct.nodes) if name not in nodes]


def _open(path: str) -> tuple[Any, str]:
    """(labels metadata, "") or (None, one-line problem naming the file)."""
    from rtpose.data.labels import load_labels

    p = Path(path)
    if not p.exists():
        return None, no_such_file(p)
    try:
        return load_labels(p, open_videos=False), ""
    except RtposeError as exc:
        return None, str(exc)


def _nodes(labels) -> list[str]:
    return [n.name for n in labels.skeletons[0].nodes] if labels.skeletons else []


def _labelled(labels) -> set[int]:
    """Frame indices with at least one user instance (what training can use)."""
    return {int(lf.frame_idx) for lf in labels.labeled_frames if lf.user_instances}


def _frame_problems(cfg: TrainConfig, opened: list, val_labels) -> list[Problem]:
    data = cfg.data
    held = set().union(*(_labelled(labels) for _, _, labels in opened))
    if not held:
        return [(opened[0][0], f"{opened[0][1]}: no user-labeled instances to train on")]
    problems: list[Problem] = []
    train = selected_indices(data.train_frames, held)
    if data.train_frames is not None and not train:
        problems.append((("data", "train_frames"), f"{data.train_frames!r} selects no labelled frame (the labels "
                                                   f"hold frames {describe_indices(sorted(held))})"))
    if data.val_frames is not None:
        val_held = _labelled(val_labels) if val_labels is not None else held
        if not selected_indices(data.val_frames, val_held):  # else validation would score training frames
            problems.append((("data", "val_frames"), f"{data.val_frames!r} selects no labelled frame (the labels hold "
                                                     f"frames {describe_indices(sorted(val_held))}); choose a block "
                                                     "of those, or leave val_frames out to hold out val_fraction "
                                                     "at random"))
        elif val_labels is None and train and not train - selected_indices(data.val_frames, held):
            what = f"frame data.train_frames {data.train_frames!r} selects" if data.train_frames else "labelled frame"
            problems.append((("data", "val_frames"), f"{data.val_frames!r} takes every {what} for validation: "
                                                     "none left to train on"))
    return problems


def _model_problems(cfg: TrainConfig) -> list[Problem]:
    """The network, the device and a reused centroid net (torch, imported only here)."""
    from rtpose.nn.unet import UNetSpec

    problems: list[Problem] = []
    crop = cfg.instance.crop_size
    stride = UNetSpec(**cfg.instance.unet.model_dump()).max_stride
    if crop is not None and (crop % stride or crop % 2):
        problems.append((("instance", "crop_size"), f"{crop} must be even and a multiple of the max stride "
                                                    f"{stride} (instance.unet)"))
    if cfg.centroid.reuse_from:
        from rtpose.nn.models import CentroidArch

        arch = CentroidArch(unet=UNetSpec(**cfg.centroid.unet.model_dump()), input_scale=cfg.centroid.input_scale,
                            sigma=cfg.centroid.sigma)
        problem = reuse_problem(Path(cfg.centroid.reuse_from), arch)
        problems += [(("centroid", "reuse_from"), problem)] if problem else []
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append((("device",), "cuda requested but torch sees no CUDA device"))
    return problems


def reuse_problem(source: Path, arch) -> str | None:
    """Why the centroid net of model dir ``source`` cannot be reused for ``arch`` (a
    ``rtpose.nn.models.CentroidArch``), or None.

    It cannot without a ``centroid/best.pt`` (an rtpose training's), nor with another
    architecture (unet, input_scale, sigma).
    """
    import torch

    from rtpose.nn.models import arch_to_dict

    ckpt_path = source / "centroid" / "best.pt"
    if not ckpt_path.exists():
        return f"{ckpt_path} not found (a model dir written by rtpose train)"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if ckpt.get("arch") != arch_to_dict(arch):
        return f"{ckpt_path} has another centroid architecture than the config's (unet, input_scale, sigma)"
    return None
