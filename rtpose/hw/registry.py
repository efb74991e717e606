"""Backend name -> implementation, for cameras and DAQs: the one list of what ``backend:`` may say.

Like the engines' map (``rtpose.engine.base.ENGINES``), each entry names its class as
``"module:Class"`` and the module is imported only when that backend is made, so a
protocol that uses the replay camera never imports OpenCV's capture code, PySpin or
nidaqmx. ``rtpose.hw.config`` derives the names a protocol may use from these maps, and
this module imports no backend at load time, so backends may import ``Camera`` and
``Daq`` without an import cycle.

Adding a backend: its class (a ``Camera`` or ``Daq`` with a ``from_config`` classmethod),
its config model in ``rtpose.hw.config`` (a ``backend: Literal["name"]`` field, added to
the union there), and one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtpose.hw.camera import Camera
    from rtpose.hw.daq import Daq

__all__ = ["CAMERAS", "DAQS", "backend_class", "make_camera", "make_daq"]

CAMERAS: dict[str, str] = {
    "replay": "rtpose.hw.replay:ReplayCamera",  # a video file played as a live camera
    "opencv": "rtpose.hw.opencv_camera:OpenCvCamera",  # /dev/videoN, a stream URL
    "spinnaker": "rtpose.hw.spinnaker:SpinnakerCamera",  # FLIR, through PySpin
}
DAQS: dict[str, str] = {
    "sim": "rtpose.hw.sim_daq:SimDaq",  # outputs looped back to inputs with a set delay
    "nidaqmx": "rtpose.hw.nidaq:NidaqDaq",  # NI, through nidaqmx-python
}


def backend_class(registry: dict[str, str], name: str) -> type:
    """Import and return the class registered under ``name``.

    Raises:
        KeyError: ``name`` is not registered (a validated config never gets here with one).
    """
    module_name, class_name = registry[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_camera(config: Any) -> "Camera":
    """The camera a validated camera config describes, not yet open (vendor SDKs are imported on open)."""
    return backend_class(CAMERAS, config.backend).from_config(config)


def make_daq(config: Any) -> "Daq":
    """The DAQ a validated DAQ config describes, not yet open (vendor drivers are imported on open)."""
    return backend_class(DAQS, config.backend).from_config(config)
