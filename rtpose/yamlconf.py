"""YAML config files that explain their own errors.

Training configs and protocol files are written by hand. When one is wrong, the user
should read which field, on which line, and why, in one line, before anything starts.
This module loads YAML while remembering the line of every key, applies ``--set
dotted.key=value`` overrides, expands ``${VAR}`` (``RTPOSE_DATA`` defaults to the shared
data directory), and validates with a pydantic model, turning its errors into
``RtposeError("file:line: field.path: message")``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from rtpose.errors import RtposeError
from rtpose.paths import data_dir

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key as ``path -> line``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        value = loader.construct_object(value_node, deep=True)
        mapping[key] = value
        loader.key_lines.setdefault(id(mapping), {})[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _collect_lines(obj: Any, key_lines: dict[int, dict], prefix: tuple = (), out: dict | None = None) -> dict:
    out = {} if out is None else out
    if isinstance(obj, dict):
        lines = key_lines.get(id(obj), {})
        for k, v in obj.items():
            path = prefix + (str(k),)
            if k in lines:
                out[path] = lines[k]
            _collect_lines(v, key_lines, path, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _collect_lines(v, key_lines, prefix + (str(i),), out)
    return out


def expand_vars(text: str) -> str:
    """``${VAR}`` from the environment; ``${RTPOSE_DATA}`` defaults to the data dir."""

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in os.environ:
            return os.environ[name]
        if name == "RTPOSE_DATA":
            return str(data_dir())
        raise RtposeError(f"${{{name}}} is not set in the environment")

    return _VAR.sub(sub, text)


def expand_tree(obj: Any) -> Any:
    """``expand_vars`` on every string of a parsed YAML tree."""
    if isinstance(obj, str):
        return expand_vars(obj)
    if isinstance(obj, dict):
        return {k: expand_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_tree(v) for v in obj]
    return obj


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Set ``dotted.key=value`` pairs; values are parsed as YAML scalars (5 -> int)."""
    for item in overrides:
        if "=" not in item:
            raise RtposeError(f"--set {item!r}: expected KEY=VALUE, e.g. daq.loopback_delay_ms=5")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RtposeError(f"--set {item!r}: empty key part")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = tree
        for p in parts[:-1]:
            if isinstance(node, list) and p.isdigit():
                node = node[int(p)]
                continue
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return tree


def load_yaml(path: str | Path) -> tuple[dict, dict[tuple, int]]:
    """Parse a YAML mapping; returns it and the line of every key path."""
    path = Path(path)
    if not path.exists():
        raise RtposeError(f"{path}: no such file")
    try:
        loader = _LineLoader(path.read_text())
        loader.key_lines = {}
        try:
            tree = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RtposeError(f"{path}{where}: not valid YAML ({problem})") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise RtposeError(f"{path}: expected a mapping of sections at the top level")
    return tree, _collect_lines(tree, loader.key_lines)


def format_validation_error(exc: pydantic.ValidationError, source: str, lines: dict[tuple, int]) -> str:
    """The first error as ``source:line: dotted.field: message`` (+ how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(str(p) for p in first["loc"])
    line = None
    for n in range(len(loc), 0, -1):  # nearest enclosing key that has a line
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    field = ".".join(loc) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required but missing"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{source}:{line}" if line else source
    return f"{where}: {field}: {msg}{more}"


def load_config(path: str | Path, model: type[ModelT], overrides: list[str] | None = None) -> ModelT:
    """Load, override, expand and validate a YAML file against ``model``."""
    tree, lines = load_yaml(path)
    tree = expand_tree(apply_overrides(tree, list(overrides or [])))
    try:
        return model.model_validate(tree)
    except pydantic.ValidationError as exc:
        raise RtposeError(format_validation_error(exc, str(path), lines)) from None
