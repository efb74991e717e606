"""Augmentation of an image and its points together, with OpenCV on the CPU.

One affine matrix per sample carries rotation, scale and translation; the image is
warped once (cv2.warpAffine, ~50 us for a crop) and the points are mapped by the same
matrix, so they can never drift apart. Top-view animals have no preferred orientation,
so rotations span +-180 degrees by default.
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np


@attrs.define
class AugmentParams:
    rotation_deg: float = 180.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate_px: float = 0.0  # uniform shift of the output, in output pixels
    brightness: float = 0.1  # additive, fraction of full scale
    contrast: tuple[float, float] = (0.8, 1.2)
    noise: float = 0.02  # Gaussian sd, fraction of full scale
    neighbour_probability: float = 0.0  # instance crops: chance of pasting in another animal
    neighbour_distance_px: tuple[float, float] = (60.0, 110.0)  # its anchor's distance from the centre
    flip_probability: float = 0.0  # chance of mirroring a sample (left and right nodes trade names)


def affine_about(src_centre: np.ndarray, dst_centre: np.ndarray, angle_deg: float, scale: float,
                 mirror: bool = False) -> np.ndarray:
    """2x3 matrix taking ``src_centre`` to ``dst_centre`` with rotation and scale about it,
    after mirroring x about it if ``mirror``."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    rot = np.array([[c, -s], [s, c]], np.float64)
    if mirror:
        rot = rot @ np.diag([-1.0, 1.0])
    t = np.asarray(dst_centre, np.float64) - rot @ np.asarray(src_centre, np.float64)
    return np.hstack([rot, t[:, None]])


def random_affine(rng: np.random.Generator, params: AugmentParams, src_centre: np.ndarray,
                  dst_centre: np.ndarray) -> tuple[np.ndarray, bool]:
    """A random 2x3 matrix about ``src_centre`` -> ``dst_centre``, and whether it mirrors.

    With ``flip_probability`` 0 no mirror is drawn, so the random stream (and a seeded
    run) is what it was before mirroring existed.
    """
    angle = rng.uniform(-params.rotation_deg, params.rotation_deg)
    scale = rng.uniform(*params.scale)
    shift = rng.uniform(-params.translate_px, params.translate_px, size=2) if params.translate_px else 0.0
    mirror = bool(params.flip_probability) and rng.random() < params.flip_probability
    return affine_about(src_centre, np.asarray(dst_centre) + shift, angle, scale, mirror), mirror


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W) warped by ``matrix`` into ``size`` = (height, width), zero outside."""
    h, w = size
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points by a 2x3 matrix (NaN stays NaN)."""
    return points @ matrix[:, :2].T.astype(points.dtype) + matrix[:, 2].astype(points.dtype)


def adjust_intensity(image: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """Contrast about the mean, brightness offset and Gaussian noise on a float image in [0, 1]."""
    out = image
    if params.contrast != (1.0, 1.0):
        mean = float(out.mean())
        out = (out - mean) * rng.uniform(*params.contrast) + mean
    if params.brightness:
        out = out + rng.uniform(-params.brightness, params.brightness)
    if params.noise:
        out = out + rng.normal(0.0, rng.uniform(0, params.noise), size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def paste_neighbour(crop: np.ndarray, patch: np.ndarray, patch_anchor: np.ndarray, rng: np.random.Generator,
                    params: AugmentParams, radius: float) -> np.ndarray:
    """``crop`` with another animal (``patch``, anchored at ``patch_anchor``) rotated at
    random and placed ``neighbour_distance_px`` from the crop centre.

    Animals are bright on a dark arena, so the two layers are merged by maximum, and the
    neighbour layer fades out beyond ``radius`` of its anchor so that it brings its own
    body, not its surroundings.
    """
    size = crop.shape[0]
    angle = rng.uniform(0.0, 2 * np.pi)
    distance = rng.uniform(*params.neighbour_distance_px)
    centre = (size - 1) / 2 + distance * np.array([np.cos(angle), np.sin(angle)])
    m = affine_about(patch_anchor, centre, rng.uniform(-180.0, 180.0), 1.0)
    layer = warp(patch, m, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - centre[0], yy - centre[1])
    fade = np.clip((radius - r) / (0.25 * radius), 0.0, 1.0).astype(np.float32)
    return np.maximum(crop, layer * fade)
