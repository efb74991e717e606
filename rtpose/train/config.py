"""The training config: one YAML file trains both networks of a top-down ID model.

Every key is validated (unknown keys are errors, with their line), so a typo never
silently trains the wrong model. See experiments/train/flies13.yaml for a full example.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rtpose.config import StrictModel
from rtpose.data.selection import parse_frame_selection


class Strict(StrictModel):
    model_config = ConfigDict(frozen=False)  # the trainer fills in the crop size on a copy


class DataConfig(Strict):
    # One .slp file or several (same skeleton and tracks; their frames are pooled, and the
    # frame selections below pick from the pool by video frame index).
    labels: str | list[str]
    val_labels: str | None = None
    # Frame selections like "0-999:10, 1000-1149": ranges inclusive, ":N" keeps every Nth.
    train_frames: str | None = None
    val_frames: str | None = None
    val_fraction: float | None = Field(None, gt=0, lt=1)
    anchor_part: str | None = "thorax"  # null: the centre of each instance's visible-node bounding box
    # Where an instance's anchor part is not visible: ``estimate`` its place from the visible
    # nodes and the labelled instances that show it (rtpose.data.anchors), or take the
    # ``bounding_box`` centre of the visible nodes (SLEAP's fallback).
    missing_anchor: Literal["estimate", "bounding_box"] = "estimate"
    classes: list[str] | None = None  # default: the track names
    # Sample weighting toward close encounters: training instances (and, for the centroid
    # net, frames) whose nearest other animal's anchor is within close_distance animal
    # sizes (see rtpose.data.proximity) are drawn close_weight times as often.
    close_weight: float = Field(1.0, ge=1.0)
    close_distance: float = Field(1.5, gt=0)
    # Left/right node pairs, e.g. [[wingL, wingR]], for mirrored samples
    # (augment.flip_probability). None: the labels' skeleton symmetries.
    symmetries: list[tuple[str, str]] | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one labels file")
        return v

    @field_validator("train_frames", "val_frames")
    @classmethod
    def _selection(cls, v: str | None) -> str | None:
        if v is not None:
            parse_frame_selection(v)  # a ConfigError, a ValueError: reported with the key's line
        return v

    @property
    def label_files(self) -> list[str]:
        return [self.labels] if isinstance(self.labels, str) else list(self.labels)


class UNetConfig(Strict):
    filters: int = Field(16, ge=1)
    filters_rate: float = Field(2.0, gt=0)
    down_blocks: int = Field(3, ge=1, le=6)
    up_blocks: int = Field(3, ge=0, le=6)
    convs_per_block: int = Field(2, ge=1)
    decoder_convs: int | None = Field(None, ge=1)
    stem_stride: Literal[1, 2, 4] = 2
    batch_norm: bool = True


class AugmentConfig(Strict):
    rotation_deg: float = Field(180.0, ge=0, le=180)
    scale: tuple[float, float] = (0.9, 1.1)
    translate_px: float = Field(0.0, ge=0)
    brightness: float = Field(0.1, ge=0)
    contrast: tuple[float, float] = (0.8, 1.2)
    noise: float = Field(0.02, ge=0)
    # centered-instance crops only: the share of crops that get another animal pasted in
    # beside the centred one, its anchor this far (crop px) from the centre. Teaches both
    # heads to ignore a touching neighbour when the labels hold few close encounters.
    neighbour_probability: float = Field(0.0, ge=0, le=1)
    neighbour_distance_px: tuple[float, float] = (60.0, 110.0)
    # the share of samples mirrored (before the rotation); in centered-instance crops the
    # nodes of each symmetric pair (data.symmetries) trade names, as in SLEAP's random flip
    flip_probability: float = Field(0.0, ge=0, le=1)


class OptimConfig(Strict):
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(100, ge=1)
    min_steps_per_epoch: int = Field(200, ge=1)
    plateau_patience: int = Field(5, ge=1)
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    min_lr: float = Field(1e-6, ge=0)
    early_stop_patience: int = Field(10, ge=1)
    max_minutes: float | None = Field(None, gt=0)  # time budget for this network
    # wall: max_minutes of wall-clock time; cpu: of this process's CPU time over its torch
    # threads (the same on an idle machine; the same compute, so the same model, on a busy one)
    budget_clock: Literal["wall", "cpu"] = "wall"
    anneal_fraction: float = Field(0.25, ge=0, lt=1)  # with max_minutes: final share with a decaying lr
    # Re-plan the epoch length from the observed step rate so that an epoch (and so the
    # plateau and early-stopping patience) lasts about this long, but never has fewer than
    # min_steps_per_epoch steps (on a slow machine patience must still mean some steps).
    # None: every epoch has max(train size / batch, min_steps_per_epoch).
    epoch_seconds: float | None = Field(None, gt=0)


class CentroidConfig(Strict):
    input_scale: float = Field(0.25, gt=0, le=1)
    sigma: float = Field(2.0, gt=0)  # input (scaled) pixels
    threshold: float = Field(0.2, ge=0, le=1)  # minimum peak to count an animal
    foreground_weight: float = Field(20.0, ge=0)  # loss weight near peaks (see trainer.confmap_loss)
    unet: UNetConfig = UNetConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig(batch_size=8)
    # a model dir whose trained centroid net (same architecture) is taken instead of
    # training one: for experiments on the centered-instance net
    reuse_from: str | None = None

    @field_validator("input_scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        return float(v)


class ClassHeadConfig(Strict):
    units: int = Field(64, ge=1)
    layers: int = Field(3, ge=1)
    loss_weight: float = Field(0.01, ge=0)


class HardKeypointConfig(Strict):
    """Online hard keypoint mining (OHKM; Chen et al., CVPR 2018, as in SLEAP's training
    config): per crop, the nodes whose confidence-map loss is at least ``ratio`` times
    the easiest node's (``min_keypoints`` to ``max_keypoints`` of them, hardest first)
    add their summed loss over the number of nodes, times ``loss_scale``, to the loss."""

    ratio: float = Field(2.0, ge=1.0)
    min_keypoints: int = Field(2, ge=1)
    max_keypoints: int | None = Field(None, ge=1)
    loss_scale: float = Field(5.0, gt=0)


class DistinctNodesConfig(Strict):
    """Nodes that never share a place in one animal (a fly's six leg tips): where two of
    them peak within ``min_distance_px`` of each other in a crop, the weaker moves to its
    own map's best other local peak more than ``exclusion_px`` away, inside the exported
    graph (``rtpose.nn.peaks.DistinctPeaks``). Changes inference only, not training."""

    nodes: list[str] = Field(min_length=2)
    min_distance_px: float = Field(3.0, gt=0)  # crop (full-resolution) pixels
    exclusion_px: float = Field(8.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, v: object) -> object:
        if isinstance(v, (list, tuple)):
            raise ValueError("give a mapping, e.g. {nodes: [forelegL4, forelegR4], min_distance_px: 3, "
                             "exclusion_px: 8}")
        return v

    @field_validator("nodes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        repeated = sorted({n for n in v if v.count(n) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} given more than once")
        return v

    @model_validator(mode="after")
    def _exclusion_holds_min_distance(self) -> DistinctNodesConfig:
        # a node moved less than min_distance_px could still share the other's place
        if self.exclusion_px < self.min_distance_px:
            raise ValueError(f"exclusion_px ({self.exclusion_px:g}) is below min_distance_px "
                             f"({self.min_distance_px:g}): a moved node could stay within the minimum distance; "
                             "give exclusion_px >= min_distance_px")
        return self

    def to_info(self, node_names: list[str]) -> dict:
        """model.json's (and rtpose.json's ``architecture.pipeline``) ``distinct_nodes``, as
        ``TopDownPipeline`` takes it: indices into ``node_names``, the names, crop pixels."""
        return {"nodes": [node_names.index(n) for n in self.nodes], "names": list(self.nodes),
                "min_distance_px": self.min_distance_px, "exclusion_px": self.exclusion_px}


class InstanceConfig(Strict):
    crop_size: int | None = Field(None, ge=16)  # None: suggested from the labels
    sigma: float = Field(2.5, gt=0)  # crop (full-resolution) pixels
    center_jitter_px: float = Field(4.0, ge=0)  # anchor noise, like the centroid net's error
    point_threshold: float = Field(0.1, ge=0, le=1)  # nodes scoring less are reported missing
    foreground_weight: float = Field(50.0, ge=0)  # loss weight near peaks (see trainer.confmap_loss)
    unet: UNetConfig = UNetConfig()
    class_head: ClassHeadConfig | None = ClassHeadConfig()  # null: no identity head
    hard_keypoints: HardKeypointConfig | None = None  # null: plain confidence-map loss
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    distinct_nodes: DistinctNodesConfig | None = None  # null: each node is its map's global peak


class TrainConfig(Strict):
    data: DataConfig
    centroid: CentroidConfig = CentroidConfig()
    instance: InstanceConfig = InstanceConfig()
    refinement: Literal["integral", "quadratic", "none"] = "integral"
    output: str = "runs/model"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    threads: int | None = Field(None, ge=1)  # torch CPU threads; None: all cores
    # Wall-clock budget of the whole run: the instance net gets what the centroid net leaves
    # of it (its own max_minutes, if smaller, still holds). None: each net's max_minutes.
    budget_minutes: float | None = Field(None, gt=0)
