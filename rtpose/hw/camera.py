"""What the daemon sees of a camera: frames with exposure and arrival times on one clock.

A camera is a clock-driven source: it does not wait for its reader. ``read`` hands over
the oldest frame the camera still holds, ``None`` once a finite source has ended, and
raises ``CameraTimeout`` when nothing came in time, which the daemon treats as "the
camera stopped delivering" (an exit path). Gaps in ``Frame.seq`` are frames the camera
exposed but dropped because the reader was late.
"""

from __future__ import annotations

import abc
import attrs
import numpy as np


@attrs.frozen
class Frame:
    """One exposure.

    ``t_exposure`` is when the light was collected (backend-specific, see each backend's
    docstring); ``t_arrival`` is when our code got the pixels. Both are ``rtpose.clock``
    seconds, so their difference is the camera's own latency.
    """

    index: int  # frame index in the source (video frame number; camera frame ID)
    image: np.ndarray = attrs.field(repr=lambda a: f"array{a.shape}")  # (H, W) uint8
    t_exposure: float
    t_arrival: float
    seq: int = attrs.field(default=attrs.Factory(lambda self: self.index, takes_self=True))  # exposures since open


class Camera(abc.ABC):
    """Open, read frames from one thread, close from any thread (a blocked ``read`` then returns ``None``)."""

    name: str = ""

    @abc.abstractmethod
    def open(self) -> None:
        """Start acquiring; exposures happen from now on whether or not anyone reads. Opening twice is a no-op."""

    @abc.abstractmethod
    def read(self, timeout_s: float = 1.0) -> Frame | None:
        """The oldest frame the camera still holds, waiting up to ``timeout_s`` for one.

        Call from one thread. ``close`` from another thread ends a blocked ``read`` (it
        then returns ``None``).

        Args:
            timeout_s: Seconds to wait for a frame.

        Returns:
            The frame (``image`` ``(H, W)`` uint8; ``t_exposure``/``t_arrival`` in
            ``rtpose.clock`` seconds), or ``None`` when a finite source has ended or the
            camera was closed.

        Raises:
            CameraTimeout: No frame within ``timeout_s``: the daemon takes this as "the
                camera stopped delivering" and stops the run with 0 V on every output.
            CameraError: The device failed (the driver's exception is its ``__cause__``).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop acquiring and release the device; safe to call twice and from another thread."""

    @property
    @abc.abstractmethod
    def frame_rate(self) -> float:
        """Frames per second the camera exposes at (nominal)."""

    @property
    @abc.abstractmethod
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of every frame."""

    @property
    def dropped(self) -> int:
        """Frames exposed but never handed to ``read`` because the reader was late."""
        return 0

    def __enter__(self) -> "Camera":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
