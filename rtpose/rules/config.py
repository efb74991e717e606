"""Schema of the protocol sections ``features``, ``rules`` and ``outputs`` (pydantic v2).

Two stages, because the model is not known when the file is first read:

1. ``TriggerSections`` validates shapes, units and the references between the three
   sections (a rule's features, an output's rule or feature) as soon as the YAML is
   parsed. Errors are ordinary pydantic ``ValidationError`` entries whose ``loc`` is the
   field path (``("rules", "male_approach")``), so the protocol loader can turn each
   into ``file:line: rules.male_approach: unknown feature 'head_to_abdomn' at column 1``.
   The live protocol model composes these sections by subclassing ``TriggerSections``
   (or declaring ``features``, ``rules``, ``outputs`` in that order with these types):
   the cross-section checks read the already validated sibling fields.
2. ``check_against_model`` checks identity and node names against the exported model
   (``ExportSpec.class_names`` / ``node_names``) and raises a ``ValidationError`` of the
   same shape, so the loader formats both stages the same way, before any device opens.

Feature names are identifiers (letters, digits, ``_``), not ``and or not abs min max``,
because rules refer to them by name.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Iterable, Literal

import attrs
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator,
                      ValidationError, ValidationInfo, field_validator, model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError

from rtpose.config import StrictModel, did_you_mean
from rtpose.rules.expression import RESERVED_WORDS, Expression, ExpressionError

MAX_ABS_VOLTS = 10.0  # the usual analog-output range; the DAQ section narrows it per channel
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)  # without a context the text is not formatted


# --- names and points -----------------------------------------------------------------


def _feature_name(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise _error("feature_name", f"feature name '{name}' must be letters, digits and _ "
                                     "(not starting with a digit), so that rules can use it")
    if name in RESERVED_WORDS:
        raise _error("feature_name", f"'{name}' is a word of the rule language; name the feature otherwise")
    return name


FeatureName = Annotated[str, AfterValidator(_feature_name)]


@attrs.frozen
class PointRef:
    """A node of one identity, written ``identity.node`` (``male.head``)."""

    identity: str
    node: str

    def __str__(self) -> str:
        return f"{self.identity}.{self.node}"


def _point_ref(value: Any) -> PointRef:
    if isinstance(value, PointRef):
        return value
    if not isinstance(value, str) or value.count(".") != 1 or not all(value.split(".")):
        raise _error("point_ref", f"expected identity.node (like male.head), got {value!r}")
    identity, node = value.split(".")
    return PointRef(identity.strip(), node.strip())


PointField = Annotated[PointRef, PlainValidator(_point_ref), PlainSerializer(str, return_type=str)]


class _Section(StrictModel):
    model_config = ConfigDict(populate_by_name=True)


# --- features -------------------------------------------------------------------------

FEATURE_KINDS = ("distance", "heading", "angle", "speed")
_KEYS_OF_KIND = {
    "distance": {"distance"},
    "heading": {"heading", "from_node", "to_node"},
    "angle": {"angle", "relative_to", "from_node", "to_node", "origin"},
    "speed": {"speed"},
}
_REQUIRED_OF_KIND = {
    "heading": ("from_node", "to_node"),
    "angle": ("relative_to", "from_node", "to_node"),
}


class FeatureConfig(_Section):
    """One feature; exactly one of ``distance``, ``heading``, ``angle``, ``speed`` says which.

    - ``distance: [a.node, b.node]`` -- mm between two points (any identities).
    - ``heading: animal, from: node, to: node`` -- degrees, direction of the vector
      from -> to in image coordinates: 0 points along +x (right), +90 along +y (down in
      the image), range (-180, 180].
    - ``angle: a.node, relative_to: animal, from: node, to: node[, origin: node]`` --
      signed degrees in (-180, 180] of the direction origin -> a.node, measured from
      the heading from -> to of ``relative_to``; ``origin`` defaults to ``from``.
      0 is straight ahead, +-180 straight behind, positive turns the way +90 does.
    - ``speed: a.node`` -- mm/s between consecutive processed frames.
    """

    distance: tuple[PointField, PointField] | None = None
    heading: str | None = None
    angle: PointField | None = None
    speed: PointField | None = None
    relative_to: str | None = None
    from_node: str | None = Field(None, alias="from")
    to_node: str | None = Field(None, alias="to")
    origin: str | None = None

    @property
    def kind(self) -> str:
        return next(k for k in FEATURE_KINDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _one_kind_with_its_keys(self) -> "FeatureConfig":
        kinds = [k for k in FEATURE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            said = f"got {' and '.join(kinds)}" if kinds else "got none"
            raise _error("feature_kind", f"say exactly one of {', '.join(FEATURE_KINDS)} ({said})")
        kind = kinds[0]
        given = {name for name in type(self).model_fields if getattr(self, name) is not None}
        stray = sorted(given - _KEYS_OF_KIND[kind])
        if stray:
            verb = "does" if len(stray) == 1 else "do"
            raise _error("feature_keys", f"{_quoted(stray)} {verb} not apply to {_a(kind)}")
        missing = [name for name in _REQUIRED_OF_KIND.get(kind, ()) if getattr(self, name) is None]
        if missing:
            raise _error("feature_keys", f"{_a(kind)} needs {_quoted(missing)}")
        return self

    def identities(self) -> list[tuple[str, str]]:
        """(yaml key, identity name) of every identity this feature names."""
        found = []
        if self.distance is not None:
            found += [(f"distance.{i}", p.identity) for i, p in enumerate(self.distance)]
        for key in ("angle", "speed"):
            if getattr(self, key) is not None:
                found.append((key, getattr(self, key).identity))
        for key in ("heading", "relative_to"):
            if getattr(self, key) is not None:
                found.append((key, getattr(self, key)))
        return found

    def nodes(self) -> list[tuple[str, str]]:
        """(yaml key, node name) of every node this feature names."""
        found = []
        if self.distance is not None:
            found += [(f"distance.{i}", p.node) for i, p in enumerate(self.distance)]
        for key in ("angle", "speed"):
            if getattr(self, key) is not None:
                found.append((key, getattr(self, key).node))
        for key in ("from_node", "to_node", "origin"):
            if getattr(self, key) is not None:
                found.append((_yaml_key(key), getattr(self, key)))
        return found


def _yaml_key(field_name: str) -> str:
    return {"from_node": "from", "to_node": "to"}.get(field_name, field_name)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _quoted(field_names: list[str]) -> str:
    return " and ".join(f"'{_yaml_key(name)}'" for name in field_names)


# --- rules ----------------------------------------------------------------------------


def _rule_text(text: str, info: ValidationInfo) -> str:
    features = info.data.get("features") if info.data else None
    try:
        Expression.parse_condition(text, known_features=None if features is None else set(features))
    except ExpressionError as exc:
        raise _error("rule_syntax", str(exc)) from None
    return text


RuleText = Annotated[str, AfterValidator(_rule_text)]


# --- outputs --------------------------------------------------------------------------


class PulseConfig(_Section):
    """A fixed-width pulse whenever ``rule`` holds, at most one per ``refractory_ms``.

    ``fire: while_true`` (default, as in the paper) starts a pulse on any frame where the
    rule holds and the refractory period since the last pulse start is over, so a rule
    that keeps holding gives a pulse train; ``fire: on_onset`` starts one only on a frame
    where the rule turns true (an onset inside the refractory period is dropped).
    """

    rule: str
    volts: float = Field(ge=-MAX_ABS_VOLTS, le=MAX_ABS_VOLTS, allow_inf_nan=False)
    duration_ms: float = Field(gt=0, allow_inf_nan=False)
    refractory_ms: float = Field(ge=0, allow_inf_nan=False)
    fire: Literal["while_true", "on_onset"] = "while_true"

    @model_validator(mode="after")
    def _refractory_covers_pulse(self) -> "PulseConfig":
        if self.refractory_ms < self.duration_ms:
            raise _error("pulse_timing", f"refractory_ms ({self.refractory_ms:g}) must be at least duration_ms "
                                         f"({self.duration_ms:g}): it counts from the pulse start")
        return self


class FollowConfig(_Section):
    """Volts follow a feature linearly: ``from: [f0, f1]`` maps onto ``to: [v0, v1]``.

    Values beyond the ends are clipped to the ``to`` range. ``missing: hold`` (default)
    keeps the last valid volts while the feature is NaN (0 V before the first valid
    one), which keeps a calibration trace continuous; ``missing: zero`` drops to 0 V.
    """

    feature: str
    feature_range: tuple[float, float] = Field(alias="from")
    volts_range: tuple[float, float] = Field(alias="to")
    missing: Literal["hold", "zero"] = "hold"

    @field_validator("feature_range")
    @classmethod
    def _distinct_ends(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(v) for v in value) or value[0] == value[1]:
            raise _error("follow_range", "'from' needs two different finite numbers")
        return value

    @field_validator("volts_range")
    @classmethod
    def _volts_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(v) and abs(v) <= MAX_ABS_VOLTS for v in value):
            raise _error("follow_range", f"'to' needs volts within +-{MAX_ABS_VOLTS:g}")
        return value


class OutputConfig(_Section):
    """A named analog output: the DAQ ``channel`` and exactly one of ``pulse`` or ``follow``."""

    channel: str = Field(min_length=1)
    pulse: PulseConfig | None = None
    follow: FollowConfig | None = None

    @model_validator(mode="after")
    def _one_action(self) -> "OutputConfig":
        if (self.pulse is None) == (self.follow is None):
            raise _error("output_action", "say exactly one of pulse or follow")
        return self


def _output_references(output: OutputConfig, info: ValidationInfo) -> OutputConfig:
    data = info.data or {}
    rules, features = data.get("rules"), data.get("features")
    if output.pulse is not None and rules is not None and output.pulse.rule not in rules:
        name = output.pulse.rule
        raise _error("unknown_rule", f"pulse.rule: unknown rule '{name}'{did_you_mean(name, rules)}")
    if output.follow is not None and features is not None and output.follow.feature not in features:
        name = output.follow.feature
        raise _error("unknown_feature", f"follow.feature: unknown feature '{name}'{did_you_mean(name, features)}")
    return output


class TriggerSections(BaseModel):
    """The ``features``, ``rules`` and ``outputs`` sections of a protocol file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Order matters: rules are checked against features, outputs against both.
    features: dict[FeatureName, FeatureConfig] = Field(default_factory=dict)
    rules: dict[str, RuleText] = Field(default_factory=dict)
    outputs: dict[str, Annotated[OutputConfig, AfterValidator(_output_references)]] = Field(default_factory=dict)

    @field_validator("outputs")
    @classmethod
    def _one_output_per_channel(cls, outputs: dict[str, OutputConfig]) -> dict[str, OutputConfig]:
        owner: dict[str, str] = {}
        for name, output in outputs.items():
            if output.channel in owner:
                raise _error("channel_taken", f"outputs '{owner[output.channel]}' and '{name}' both drive "
                                              f"channel {output.channel}")
            owner[output.channel] = name
        return outputs


# --- against the model ----------------------------------------------------------------


def reference_errors(sections: TriggerSections, node_names: Iterable[str],
                     class_names: Iterable[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for each identity or node name the model does not have."""
    nodes, classes = list(node_names), list(class_names)
    errors = []
    for name, feature in sections.features.items():
        for key, identity in feature.identities():
            if identity not in classes:
                errors.append((("features", name, *_path(key)),
                               f"unknown identity '{identity}'{did_you_mean(identity, classes)}"))
        for key, node in feature.nodes():
            if node not in nodes:
                errors.append((("features", name, *_path(key)), f"unknown node '{node}'{did_you_mean(node, nodes)}"))
    return errors


def check_against_model(sections: TriggerSections, node_names: Iterable[str], class_names: Iterable[str]) -> None:
    """Raise a ``ValidationError`` (field paths as ``loc``) if a name is not in the model.

    Pass ``spec.node_names, spec.class_names`` of the ``ExportSpec`` the daemon will run.
    """
    errors = reference_errors(sections, node_names, class_names)
    if errors:
        raise ValidationError.from_exception_data("protocol", [
            InitErrorDetails(type=_error("unknown_name", message), loc=loc, input=None) for loc, message in errors
        ])


def _path(key: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in key.split("."))
