"""The live daemon: camera -> FrameSlot -> inference -> features -> rules -> DAQ, safely.

``rtpose run PROTOCOL.yaml`` and ``rtpose listen`` are thin commands over this package.
From Python (the latency calibration builds on it)::

    from rtpose.live import Daemon, load_protocol, read_recording

    loaded = load_protocol("experiments/male_approach_replay.yaml", ["duration=5"])  # opens nothing
    result = Daemon(loaded, capture_ai=True).run()   # blocks; every exit writes 0 V first
    result.summary                                    # the figures of `rtpose run --summary`
    recording = read_recording(result.recording)      # per-frame times, poses, features, rules, volts
    result.ai_trace                                   # the DAQ's analog input over the run

Modules: ``protocol`` (the schema and its checks), ``frameslot``, ``daemon`` (threads and
shutdown), ``outputs`` (the one owner of DAQ writes), ``publisher`` (ZeroMQ),
``recorder`` (the on-disk record, its reader and .slp export), ``summary``, ``listen``,
``command``. Importing this package does not import torch.
"""

from rtpose.live.daemon import CameraStalled, Daemon, InferenceStalled, RunResult
from rtpose.live.frameslot import FrameSlot
from rtpose.live.protocol import LoadedProtocol, Protocol, load_protocol
from rtpose.live.recorder import Recording, export_slp, offline_rule_agreement, read_recording
from rtpose.live.records import DropRecord, FrameRecord, OutputEvent

__all__ = [
    "CameraStalled", "Daemon", "DropRecord", "FrameRecord", "FrameSlot", "InferenceStalled", "LoadedProtocol",
    "OutputEvent", "Protocol", "Recording", "RunResult", "export_slp", "load_protocol", "offline_rule_agreement",
    "read_recording",
]
