"""What the daemon sees of a camera: frames with exposure and arrival times on one clock.

A camera is a clock-driven source: it does not wait for its reader. ``read`` hands over
the oldest frame the camera still holds, ``None`` once a finite source has ended, and
raises ``CameraTimeout`` when nothing came in time, which the daemon treats as "the
camera stopped delivering" (an exit path). Gaps in ``Frame.seq`` are frames the camera
exposed but dropped because the reader was late.
"""

from __future__ import annotations

import abc
from typing import Callable

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
    # (H, W) uint8, or a function giving them and when they became available (see ``image``)
    _image: np.ndarray | Callable[[], tuple[np.ndarray, float]] = attrs.field(alias="image", repr=False)
    t_exposure: float
    _t_arrival: float = attrs.field(alias="t_arrival")
    seq: int = attrs.field(default=attrs.Factory(lambda self: self.index, takes_self=True))  # exposures since open
    _decoded: list = attrs.field(factory=list, init=False, repr=False, eq=False)  # [(pixels, t_available)]

    @property
    def image(self) -> np.ndarray:
        """The pixels, (H, W) uint8.

        A replayed frame decodes them here, on first use: like a real camera's, a frame
        that nobody looks at (one the loop drops) costs nothing.

        Raises:
            CameraError: the pixels could not be had (``FrameLost``: the daemon drops the
                frame; ``CameraClosed``: the camera was closed first, at the shutdown).
        """
        if not callable(self._image):
            return self._image
        if not self._decoded:
            self._decoded.append(self._image())
        return self._decoded[0][0]

    @property
    def t_arrival(self) -> float:
        """When rtpose had the pixels (``rtpose.clock`` seconds).

        Handed over by the driver, or, for a replayed frame decoded on first use, when the
        decoding finished (decoding is the replay's readout).
        """
        if self._decoded:
            return max(self._t_arrival, self._decoded[0][1])
        return self._t_arrival


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
