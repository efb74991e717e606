"""Cameras and DAQs behind small interfaces, so everything above runs the same on a rig and in simulation.

Cameras: ``replay`` (a video file as a live camera), ``opencv``, ``spinnaker`` (FLIR).
DAQs: ``sim`` (outputs looped back to inputs with an exact, configurable delay),
``nidaqmx`` (NI). Vendor SDKs are imported only when their backend opens.
"""

from rtpose.hw.camera import Camera, Frame
from rtpose.hw.config import (
    CameraConfig,
    DaqConfig,
    NidaqConfig,
    OpenCvCameraConfig,
    ReplayCameraConfig,
    SimDaqConfig,
    SpinnakerCameraConfig,
    open_camera,
    open_daq,
    parse_camera_config,
    parse_daq_config,
)
from rtpose.hw.daq import AiStream, AiTrace, Daq
from rtpose.hw.errors import CameraClosed, CameraError, CameraTimeout, DaqError, DriverMissing, FrameLost
from rtpose.hw.registry import make_camera, make_daq

__all__ = [
    "AiStream",
    "AiTrace",
    "Camera",
    "CameraClosed",
    "CameraConfig",
    "CameraError",
    "CameraTimeout",
    "FrameLost",
    "Daq",
    "DaqConfig",
    "DaqError",
    "DriverMissing",
    "Frame",
    "NidaqConfig",
    "OpenCvCameraConfig",
    "ReplayCameraConfig",
    "SimDaqConfig",
    "SpinnakerCameraConfig",
    "make_camera",
    "make_daq",
    "open_camera",
    "open_daq",
    "parse_camera_config",
    "parse_daq_config",
]
