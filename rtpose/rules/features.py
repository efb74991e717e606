"""Pose features in the units experimenters think in: mm, degrees, mm/s.

Each configured feature compiles once into a small function of the frame's animals, so
the per-frame cost is a handful of float operations in plain Python (numpy calls on
single values cost more than the arithmetic). Coordinates are image pixels (x right, y
down); angles follow ``atan2`` in those coordinates, so +90 degrees points down the
image. Anything missing -- an identity absent from the frame, a NaN node, a zero-length
vector, the first frame of a speed -- gives NaN, never an exception.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from rtpose.errors import RtposeError
from rtpose.poses import Poses
from rtpose.rules.config import FeatureConfig, PointRef

NAN = float("nan")

Animal = list[list[float]]  # nodes x [x, y], as Python floats
Animals = Sequence[Animal | None]  # by class index; None when the identity is absent
FeatureFunction = Callable[[Animals, float], float]


def wrap_degrees(angle: float) -> float:
    """``angle`` folded into (-180, 180]."""
    folded = (angle + 180.0) % 360.0 - 180.0
    return 180.0 if folded == -180.0 else folded


def direction_degrees(x0: float, y0: float, x1: float, y1: float) -> float:
    """Direction of the vector (x0, y0) -> (x1, y1); NaN if it has no length or a NaN end."""
    dx, dy = x1 - x0, y1 - y0
    if dx == 0.0 and dy == 0.0:
        return NAN
    return wrap_degrees(math.degrees(math.atan2(dy, dx)))


class FeatureSet:
    """The configured features, compiled against the model's node and class names.

    ``compute(poses, t)`` returns the values in ``names`` order. Speeds keep the previous
    frame's position, so one FeatureSet follows one stream of frames; ``reset()`` before
    replaying another.
    """

    def __init__(self, features: Mapping[str, FeatureConfig], node_names: Sequence[str],
                 class_names: Sequence[str], px_per_mm: float):
        if not (isinstance(px_per_mm, (int, float)) and math.isfinite(px_per_mm) and px_per_mm > 0):
            raise RtposeError(f"arena.px_per_mm must be a positive number, got {px_per_mm!r}")
        self.names: list[str] = list(features)
        self.px_per_mm = float(px_per_mm)
        self._node_index = {name: i for i, name in enumerate(node_names)}
        self._class_index = {name: i for i, name in enumerate(class_names)}
        self.n_classes = len(self._class_index)
        self._speeds: list[_Speed] = []
        self._functions = [self._compile(name, config) for name, config in features.items()]
        self._used_classes = sorted(self._classes_used(features.values()))

    def compute(self, poses: Poses, t: float) -> list[float]:
        animals = self.animals(poses)
        return [function(animals, t) for function in self._functions]

    def reset(self) -> None:
        for speed in self._speeds:
            speed.reset()

    def animals(self, poses: Poses) -> list[Animal | None]:
        """Points of each identity the features use, as nested lists, by class index."""
        animals: list[Animal | None] = [None] * self.n_classes
        if not self._used_classes or len(poses) == 0:
            return animals
        identity = poses.identity.tolist()
        for class_index in self._used_classes:
            if class_index in identity:  # the first instance wins if a class repeats
                animals[class_index] = poses.points[identity.index(class_index)].tolist()
        return animals

    # --- compiling ----------------------------------------------------------------------

    def _point(self, ref: PointRef, feature_name: str) -> tuple[int, int]:
        return self._identity(ref.identity, feature_name), self._node(ref.node, feature_name)

    def _identity(self, name: str, feature_name: str) -> int:
        if name not in self._class_index:
            raise RtposeError(f"features.{feature_name}: unknown identity '{name}'")
        return self._class_index[name]

    def _node(self, name: str, feature_name: str) -> int:
        if name not in self._node_index:
            raise RtposeError(f"features.{feature_name}: unknown node '{name}'")
        return self._node_index[name]

    def _classes_used(self, configs) -> set[int]:
        return {self._class_index[identity] for config in configs for _, identity in config.identities()}

    def _compile(self, name: str, config: FeatureConfig) -> FeatureFunction:
        kind = config.kind
        if kind == "distance":
            return _distance(*self._point(config.distance[0], name), *self._point(config.distance[1], name),
                             self.px_per_mm)
        if kind == "heading":
            animal = self._identity(config.heading, name)
            return _heading(animal, self._node(config.from_node, name), self._node(config.to_node, name))
        if kind == "angle":
            reference = self._identity(config.relative_to, name)
            origin = config.origin if config.origin is not None else config.from_node
            return _relative_angle(*self._point(config.angle, name), reference,
                                   self._node(config.from_node, name), self._node(config.to_node, name),
                                   self._node(origin, name))
        if kind == "speed":
            speed = _Speed(*self._point(config.speed, name), self.px_per_mm)
            self._speeds.append(speed)
            return speed
        raise AssertionError(kind)


def _distance(class_a: int, node_a: int, class_b: int, node_b: int, px_per_mm: float) -> FeatureFunction:
    def distance(animals: Animals, t: float) -> float:
        a, b = animals[class_a], animals[class_b]
        if a is None or b is None:
            return NAN
        (xa, ya), (xb, yb) = a[node_a], b[node_b]
        return math.hypot(xb - xa, yb - ya) / px_per_mm  # NaN in, NaN out

    return distance


def _heading(animal_index: int, from_node: int, to_node: int) -> FeatureFunction:
    def heading(animals: Animals, t: float) -> float:
        animal = animals[animal_index]
        if animal is None:
            return NAN
        (x0, y0), (x1, y1) = animal[from_node], animal[to_node]
        return direction_degrees(x0, y0, x1, y1)

    return heading


def _relative_angle(target_class: int, target_node: int, reference_class: int,
                    from_node: int, to_node: int, origin_node: int) -> FeatureFunction:
    def angle(animals: Animals, t: float) -> float:
        target, reference = animals[target_class], animals[reference_class]
        if target is None or reference is None:
            return NAN
        (x0, y0), (x1, y1) = reference[from_node], reference[to_node]
        (xo, yo), (xt, yt) = reference[origin_node], target[target_node]
        return wrap_degrees(direction_degrees(xo, yo, xt, yt) - direction_degrees(x0, y0, x1, y1))

    return angle


class _Speed:
    """mm/s of one point between consecutive processed frames (NaN if either lacks it)."""

    def __init__(self, class_index: int, node_index: int, px_per_mm: float):
        self.class_index, self.node_index, self.px_per_mm = class_index, node_index, px_per_mm
        self.reset()

    def reset(self) -> None:
        self.previous: tuple[float, float, float] | None = None

    def __call__(self, animals: Animals, t: float) -> float:
        animal = animals[self.class_index]
        x, y = animal[self.node_index] if animal is not None else (NAN, NAN)
        previous, self.previous = self.previous, (x, y, t)
        if previous is None or not t > previous[2]:
            return NAN
        x0, y0, t0 = previous
        return math.hypot(x - x0, y - y0) / self.px_per_mm / (t - t0)
