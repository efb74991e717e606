"""Features -> rules -> outputs for one stream of frames, online and offline alike.

The daemon and the offline evaluator run the very same ``TriggerProgram.step``, so a
disagreement between recorded trigger states and an offline re-evaluation of the
recorded poses can only come from different inputs (frames, timestamps), never from two
implementations of a rule.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import attrs
import numpy as np

from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.poses import Poses
from rtpose.rules.config import TriggerSections, reference_errors
from rtpose.rules.expression import Expression, holds
from rtpose.rules.features import FeatureSet
from rtpose.rules.outputs import Output, make_output


@attrs.frozen
class FrameDecision:
    """What one processed frame decided; also what the recorder and publisher carry."""

    t: float
    features: dict[str, float]  # by feature name; NaN when missing
    rules: dict[str, bool]  # by rule name
    volts: dict[str, float]  # by output name (``TriggerProgram.channels`` maps to DAQ channels)


class TriggerProgram:
    """The compiled ``features``/``rules``/``outputs`` sections. Not thread-safe.

    Typical live use::

        program = TriggerProgram.for_model(sections, spec, px_per_mm)
        ...every processed frame, t = clock.now() just before writing:
        decision = program.step(t, poses, frame_time=exposure)  # write decision.volts, record, publish
        deadline = program.next_deadline(t)     # if not None, at that time:
        volts = program.volts_at(deadline)      # write these (a pulse's off edge)
        ...every exit path: write program.safe_volts()
    """

    def __init__(self, sections: TriggerSections, node_names: Sequence[str], class_names: Sequence[str],
                 px_per_mm: float):
        errors = reference_errors(sections, node_names, class_names)
        if errors:
            loc, message = errors[0]
            raise RtposeError(f"{'.'.join(map(str, loc))}: {message}")
        self.sections = sections
        self.features = FeatureSet(sections.features, node_names, class_names, px_per_mm)
        slots = {name: i for i, name in enumerate(self.features.names)}
        self.rule_names = list(sections.rules)
        self._rules = [Expression.parse_condition(text, slots).compile(slots) for text in sections.rules.values()]
        self.outputs: list[Output] = [make_output(name, config) for name, config in sections.outputs.items()]
        self.channels: dict[str, str] = {output.name: output.channel for output in self.outputs}

    @classmethod
    def for_model(cls, sections: TriggerSections, spec: ExportSpec, px_per_mm: float) -> "TriggerProgram":
        return cls(sections, spec.node_names, spec.class_names, px_per_mm)

    @property
    def feature_names(self) -> list[str]:
        return self.features.names

    @property
    def output_names(self) -> list[str]:
        return list(self.channels)

    def step(self, t: float, poses: Poses, frame_time: float | None = None) -> FrameDecision:
        """Evaluate one processed frame; ``t`` is now, as the volts are about to be written.

        Pulses count their duration and refractory period from ``t``, so pass the time of
        the write, not the exposure (else latency eats into the pulse). Speeds use
        ``frame_time`` (the camera's exposure timestamp) when given, so their time steps
        are the camera's, free of inference jitter. Both on ``rtpose.clock``.
        """
        values = self.features.compute(poses, t if frame_time is None else frame_time)
        features = dict(zip(self.features.names, values))
        rules = {name: holds(rule(values)) for name, rule in zip(self.rule_names, self._rules)}
        volts = {output.name: output.update(t, rules, features) for output in self.outputs}
        return FrameDecision(t, features, rules, volts)

    def volts_at(self, t: float) -> dict[str, float]:
        """Each output's volts at ``t`` without a new frame (for deadlines)."""
        return {output.name: output.volts_at(t) for output in self.outputs}

    def next_deadline(self, now: float) -> float | None:
        """The earliest time after ``now`` at which an output changes without a frame."""
        deadlines = [d for d in (output.next_deadline(now) for output in self.outputs) if d is not None]
        return min(deadlines) if deadlines else None

    def safe_volts(self) -> dict[str, float]:
        return {output.name: output.safe_volts for output in self.outputs}

    def reset(self) -> None:
        """Forget speeds' previous positions, pulse timing and held follow values."""
        self.features.reset()
        for output in self.outputs:
            output.reset()


# --- offline --------------------------------------------------------------------------


@attrs.frozen
class OfflineEvaluation:
    """Per-frame features, rule states and output volts of a recorded stream."""

    timestamps: np.ndarray  # (T,) float64
    features: dict[str, np.ndarray]  # (T,) float64 each
    rules: dict[str, np.ndarray]  # (T,) bool each
    volts: dict[str, np.ndarray]  # (T,) float64 each, at frame times


def evaluate_offline(sections: TriggerSections, node_names: Sequence[str], class_names: Sequence[str],
                     px_per_mm: float, poses: Iterable[Poses], timestamps: Sequence[float],
                     frame_times: Sequence[float] | None = None) -> OfflineEvaluation:
    """Replay recorded poses through a fresh ``TriggerProgram``, frame by frame.

    Pass exactly the processed frames and the ``t`` / ``frame_time`` the daemon passed to
    ``step`` (see there), or speeds and pulse timing will differ.
    """
    program = TriggerProgram(sections, node_names, class_names, px_per_mm)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    frame_times = timestamps if frame_times is None else np.asarray(frame_times, dtype=np.float64)
    if frame_times.shape != timestamps.shape:
        raise RtposeError(f"{timestamps.size} timestamps but {frame_times.size} frame times")
    decisions = [program.step(t, p, frame_time)
                 for t, frame_time, p in zip(timestamps.tolist(), frame_times.tolist(), poses, strict=True)]
    return OfflineEvaluation(
        timestamps=timestamps,
        features={n: np.array([d.features[n] for d in decisions], np.float64) for n in program.feature_names},
        rules={n: np.array([d.rules[n] for d in decisions], bool) for n in program.rule_names},
        volts={n: np.array([d.volts[n] for d in decisions], np.float64) for n in program.output_names},
    )


def rule_agreement(recorded_rules: Mapping[str, Sequence[bool]], offline: OfflineEvaluation) -> dict[str, float]:
    """Fraction of frames on which each recorded rule state equals the offline one."""
    agreement = {}
    for name, recorded in recorded_rules.items():
        recorded = np.asarray(recorded, bool)
        if name not in offline.rules:
            raise RtposeError(f"rule '{name}' was recorded but is not in the protocol")
        if recorded.shape != offline.rules[name].shape:
            raise RtposeError(f"rule '{name}': {recorded.size} recorded frames, {offline.rules[name].size} offline")
        agreement[name] = float(np.mean(recorded == offline.rules[name])) if recorded.size else 1.0
    return agreement
