"""Errors raised at the hardware boundary.

All are ``RtposeError`` so the CLI prints them as one line; the subclasses let the daemon
tell "the camera stopped delivering" (an exit path that must zero the outputs) from a bad
setting it should have caught before opening anything.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rtpose.errors import RtposeError


class CameraError(RtposeError):
    """A camera could not be opened, configured or read."""


class CameraTimeout(CameraError):
    """No frame arrived within the read timeout: the daemon treats this as "the camera stopped delivering"."""


class FrameLost(CameraError):
    """A frame was handed over but its pixels cannot be had.

    A replayed frame that does not decode, or lies past the real end of its stream;
    ``seq`` is the frame's exposure number. The daemon counts it as dropped and goes on;
    the camera says on its next read whether the source ended.
    """

    def __init__(self, message: str, seq: int):
        super().__init__(message)
        self.seq = seq


class CameraClosed(CameraError):
    """A frame's pixels were asked for after its camera closed (a replayed frame is decoded on first use).

    At the end of a run the daemon closes the camera while the inference thread may hold
    a frame it has not decoded yet; that frame is dropped for the shutdown, not an error.
    """


class DaqError(RtposeError):
    """A DAQ could not be opened, written or read (unknown channel, closed device, driver failure)."""


class DriverMissing(RtposeError):
    """A backend's vendor library is not installed; the message says what to install."""


def import_driver(module: str, backend: str, install_hint: str) -> ModuleType:
    """Import a vendor module only when its backend is chosen, with a one-line fix if it is absent.

    Vendor SDKs are not on the development machines or in CI, so nothing else in rtpose
    may import them at module level.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise DriverMissing(
            f"the {backend!r} backend needs the Python module {module!r}, which could not be imported "
            f"({exc.__class__.__name__}: {first_line}); {install_hint}"
        ) from None
