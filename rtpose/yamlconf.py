"""Kept importable for code written before ``rtpose.config``; use ``rtpose.config``.

Everything here is ``rtpose.config``'s: one YAML loader with key lines, ``--set``
overrides, ``${VAR}`` expansion and one error formatter.
"""

from __future__ import annotations

import pydantic

from rtpose.config import apply_overrides, expand_tree, expand_vars, load_config, load_yaml
from rtpose.config import describe_errors as _describe_errors

__all__ = ["apply_overrides", "expand_tree", "expand_vars", "format_validation_error", "load_config", "load_yaml"]


def format_validation_error(exc: pydantic.ValidationError, source: str, lines: dict[tuple, int]) -> str:
    """``rtpose.config.describe_errors`` of a ``ValidationError``: ``source:line: field: message``."""
    return _describe_errors(exc.errors(), source, lines)
