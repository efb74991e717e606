"""Pose-derived triggers: features (mm, degrees), rules, and the volts of each output.

This package decides; it never touches hardware. Per processed frame the daemon calls
``TriggerProgram.step(t, poses)`` and writes the returned volts to the DAQ channels; the
offline evaluator runs the same code over recorded poses.

The three protocol sections it owns, as an experimenter writes them (``arena.px_per_mm``
belongs to the protocol; it converts pixels to mm)::

    arena: {px_per_mm: 30.3}

    features:
      # distance in mm between two points: identity.node
      head_to_abdomen: {distance: [male.head, female.abdomen]}
      thorax_distance: {distance: [male.thorax, female.thorax]}
      # heading in degrees of the vector from -> to; 0 = image right, 90 = image down
      male_heading: {heading: male, from: thorax, to: head}
      # where a point lies relative to an animal's heading: signed degrees in (-180, 180],
      # 0 = straight ahead, +-180 = straight behind; measured from the `from` node
      # (override with `origin: head`)
      female_in_front_of_male: {angle: female.thorax, relative_to: male, from: thorax, to: head}
      male_behind_female: {angle: male.thorax, relative_to: female, from: thorax, to: head}
      # mm/s between consecutive processed frames
      male_speed: {speed: male.thorax}

    rules:
      # numbers, feature names, + - * /, abs() min() max(), < <= > >= == != (chainable),
      # and / or / not, parentheses
      male_approach: "head_to_abdomen < 2 and abs(female_in_front_of_male) < 25 and abs(male_behind_female) > 145"
      male_running: "male_speed > 10"

    outputs:
      opto_led:                # a name of your choice; recorded and published
        channel: ao0           # the DAQ analog output (see the daq section)
        # 5 V for 25 ms whenever the rule holds, at most one pulse start per 500 ms;
        # `fire: on_onset` pulses only when the rule turns true
        pulse: {rule: male_approach, volts: 5.0, duration_ms: 25, refractory_ms: 500}
      distance_signal:
        channel: ao1
        # 0 mm -> 1 V ... 20 mm -> 5 V, clipped to 1..5 V; while the feature is missing
        # the last value is held (`missing: zero` drops to 0 V instead)
        follow: {feature: thorax_distance, from: [0, 20], to: [1, 5]}

Missing data: a feature is NaN when its identity is absent from the frame or a node is
missing. A comparison with NaN is *unknown*; ``and``/``or``/``not`` follow three-valued
logic (``false and unknown`` is false, ``true or unknown`` is true, ``not unknown`` is
unknown) and a rule fires only when it is *true*. So a rule whose outcome depends on a
missing value is false; see ``rtpose.rules.expression``.

Validation: ``TriggerSections`` (the pydantic model of the three sections) checks
shapes, units and cross references when the file is read; ``check_against_model``
checks identity and node names against the model's ``ExportSpec``. Both raise pydantic
``ValidationError`` whose ``loc`` is the field path, for the protocol loader to turn
into ``file:line: field: message``. A bad rule reports its column.
"""

from rtpose.rules.config import (FeatureConfig, FollowConfig, OutputConfig, PointRef, PulseConfig, TriggerSections,
                                 check_against_model, reference_errors)
from rtpose.rules.expression import Expression, ExpressionError
from rtpose.rules.features import FeatureSet
from rtpose.rules.outputs import FollowOutput, Output, PulseOutput
from rtpose.rules.program import (FrameDecision, OfflineEvaluation, TriggerProgram, evaluate_offline,
                                  rule_agreement)

__all__ = [
    "Expression", "ExpressionError", "FeatureConfig", "FeatureSet", "FollowConfig", "FollowOutput", "FrameDecision",
    "OfflineEvaluation", "Output", "OutputConfig", "PointRef", "PulseConfig", "PulseOutput", "TriggerProgram",
    "TriggerSections", "check_against_model", "evaluate_offline", "reference_errors", "rule_agreement",
]
