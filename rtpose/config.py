"""The configuration layer: every hand-written YAML file rtpose reads goes through here.

Training configs, protocol files and device files (``firmware_configs/``) are written by
hand. When one is wrong, the user reads which file, which line, which field and why, in
one line, before anything starts, worded the same whatever the file:

    experiments/run.yaml:6: camera.exposure: unknown key

This module holds the pieces every loader shares, once:

- ``StrictModel``: the pydantic base of every schema (unknown keys are errors, settings
  do not change after loading).
- ``load_yaml``: a YAML mapping and the line of every key path.
- ``apply_overrides``: ``--set dotted.key=value`` pairs.
- ``expand_vars`` / ``expand_tree``: ``${VAR}`` and ``$VAR`` from the environment
  (``RTPOSE_DATA`` defaults to the shared data directory), ``~`` in paths.
- ``resolve_path``: a relative path in the working directory, else in the repository.
- ``describe_errors``: pydantic errors -> ``file:line: field.path: message``.
- ``load_config``: all of the above for one file and one model.

Every problem is a ``ConfigError``: an ``RtposeError`` (the CLI prints one line and exits
2) that is also a ``ValueError``, so a pydantic validator may let it through and pydantic
reports it against the field being validated.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence, TypeVar

import pydantic
import yaml
from pydantic import ConfigDict

from rtpose.errors import RtposeError
from rtpose.paths import REPO_ROOT, data_dir, near_miss, no_such_file, some_names

__all__ = [
    "ConfigError",
    "KeyLines",
    "StrictModel",
    "apply_overrides",
    "describe_errors",
    "did_you_mean",
    "expand_tree",
    "expand_vars",
    "load_config",
    "load_tree",
    "load_yaml",
    "override_lines",
    "resolve_path",
    "validate",
]

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
KeyLines = Mapping[tuple[str, ...], int | str]  # a line number, or the --set that gave the key
"""The 1-based line of every key of a YAML tree, by key path (list items by index, as text)."""

# $NAME or ${NAME}, NAME an identifier: "$5" and "a $ b" are left alone.
_VARIABLE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")


class ConfigError(RtposeError, ValueError):
    """A configuration problem the user can fix; the message is one line naming file, line and field."""


class StrictModel(pydantic.BaseModel):
    """Base of every configuration schema: unknown keys are typos until proven otherwise.

    Models are frozen, because settings never change after loading; a schema that must
    be edited after validation (the trainer fills in a suggested crop size on a copy)
    sets ``model_config = ConfigDict(frozen=False)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- YAML with the line of every key ---------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict = {}
    lines = loader.key_lines.setdefault(id(mapping), {})
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:  # YAML would keep the last silently: an edit appended beside the original
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {lines[key]})", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
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


def load_yaml(path: str | Path, what: str = "file") -> tuple[dict, dict[tuple[str, ...], int]]:
    """Parse a YAML file whose top level is a mapping.

    Args:
        path: The file.
        what: What the file is, for messages ("device file").

    Returns:
        The mapping (empty for an empty file) and the 1-based line of every key path.

    Raises:
        ConfigError: The file cannot be read, is not YAML, or is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(no_such_file(path, what)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file, so not a YAML {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    loader = _LineLoader(text)
    loader.key_lines = {}
    try:
        tree = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a {what} is a mapping of keys at the top level, got {type(tree).__name__}")
    return tree, _collect_lines(tree, loader.key_lines)


# --- --set overrides, ${VAR}, paths ----------------------------------------------------


def _override_key(item: str) -> tuple[str, ...]:
    """The key path of a ``dotted.key=value`` override (``("daq", "loopback_delay_ms")``)."""
    return tuple(item.split("=", 1)[0].strip().split("."))


def apply_overrides(tree: dict, overrides: Iterable[str]) -> dict:
    """Set ``dotted.key=value`` pairs in place; values are parsed as YAML scalars (``5`` -> int).

    A missing section on the way is created; a list item is addressed by its index.

    Raises:
        ConfigError: A pair is not ``KEY=VALUE``, or its key goes through a value that is not a section.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, KEY dotted through its sections "
                              f"(e.g. {item.strip() or 'section.key'}=VALUE)")
        key, raw = item.split("=", 1)
        parts = list(_override_key(item))
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key part")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node: Any = tree
        try:
            for p in parts[:-1]:
                if isinstance(node, list) and p.isdigit():
                    node = node[int(p)]
                    continue
                if not isinstance(node.get(p), (dict, list)):
                    node[p] = {}
                node = node[p]
            if isinstance(node, list):
                node[int(parts[-1])] = value
            else:
                node[parts[-1]] = value
        except (AttributeError, TypeError, IndexError, ValueError):
            raise ConfigError(f"--set {item!r}: {key} goes through a value that is not a section") from None
    return tree


def expand_vars(text: str) -> str:
    """``$VAR`` and ``${VAR}`` from the environment, and a leading ``~``.

    ``RTPOSE_DATA`` defaults to ``rtpose.paths.data_dir()``. An unset variable is an
    error, never silently left in.

    Raises:
        ConfigError: A variable is not set.
    """

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in os.environ:
            return os.environ[name]
        if name == "RTPOSE_DATA":
            return str(data_dir())
        raise ConfigError(f"environment variable {name} in {text!r} is not set")

    expanded = _VARIABLE.sub(substitute, text) if "$" in text else text
    return os.path.expanduser(expanded) if expanded.startswith("~") else expanded


def expand_tree(obj: Any, source: str | Path | None = None, lines: KeyLines | None = None,
                _path: tuple[str, ...] = ()) -> Any:
    """``expand_vars`` on every string of a parsed YAML tree; returns a new tree.

    Raises:
        ConfigError: A variable is not set; with ``source``, the message names the file,
            the line (from ``lines``) and the key.
    """
    if isinstance(obj, str):
        try:
            return expand_vars(obj)
        except ConfigError as exc:
            if source is None:
                raise
            raise ConfigError(_where(source, lines or {}, _path) + str(exc)) from None
    if isinstance(obj, dict):
        return {k: expand_tree(v, source, lines, _path + (str(k),)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_tree(v, source, lines, _path + (str(i),)) for i, v in enumerate(obj)]
    return obj


def resolve_path(text: str) -> Path:
    """An existing file or directory: absolute, or relative to the working directory, else to the repository.

    The repository root is where ``firmware_configs/``, ``experiments/`` and ``models/``
    ship, so shipped files are found from any working directory. ``$VAR`` and ``~`` are
    expanded first.

    Raises:
        ConfigError: Nothing exists there (the message names where it looked).
    """
    path = Path(expand_vars(text))
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    hint = next((h for h in (near_miss(c) for c in candidates) if h), "")  # one typo away, where it would be found
    if path.is_absolute():
        raise ConfigError(f"{text}: not found{hint}")
    places = dict.fromkeys(str(base) for base in (Path.cwd(), REPO_ROOT))
    raise ConfigError(f"{text}: not found in {' or '.join(places)}{hint}")


# --- pydantic errors as one line --------------------------------------------------------


def did_you_mean(name: str, candidates: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss (``difflib``), else the list of choices, else nothing.

    For a value that must be one of ``candidates`` (a node, a feature, an identity):
    ``f"unknown node '{name}'{did_you_mean(name, nodes)}"``. Up to 20 choices are listed,
    sorted; more, none.
    """
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if candidates and len(candidates) <= 20:
        return f" (known: {', '.join(sorted(candidates))})"
    return ""


def misspelt_key_hint(key: str, given: Any) -> str:
    """A hint for a required key that ``given`` lacks but has a near miss of.

    Returns ``"; did you mean 'backend' for 'backnd'?"`` when the mapping ``given`` has a
    key close to ``key``, else ``""``.
    """
    if not isinstance(given, Mapping):
        return ""
    close = difflib.get_close_matches(key, [str(k) for k in given], n=1)
    return f"; did you mean '{key}' for '{close[0]}'?" if close else ""


def _message(error: Mapping[str, Any]) -> str:
    kind, msg = error.get("type"), str(error.get("msg", ""))
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        ctx = error.get("ctx") or {}
        tag = ctx.get("discriminator", "backend").strip(chr(39))
        return f"required key is missing ({tag}{misspelt_key_hint(tag, error.get('input'))})"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx") or {}
        return f"unknown backend {ctx.get('tag')!r} (one of {ctx.get('expected_tags')})"
    return msg.removeprefix("Value error, ")


def _where(source: str | Path, lines: KeyLines, loc: Sequence[str]) -> str:
    """``source:line: field: `` for the nearest enclosing key that has a line.

    A field whose check spans a section (``instance.distinct_nodes``) also names the
    ``--set`` options that gave keys inside it (``source:17 with --set KEY=VALUE: field: ``).
    """
    loc = tuple(loc)
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    field = f"{'.'.join(loc)}: " if loc else ""  # a check of the whole mapping names no field
    if isinstance(line, str):  # given on the command line
        return f"{source} with {line}: {field}"
    # a check of a whole section (a model validator) that a --set inside it took part in
    inside = sorted({v for k, v in lines.items() if isinstance(v, str) and len(k) > len(loc) > 0
                     and k[:len(loc)] == loc})
    given = f" with {', '.join(inside)}" if inside else ""
    return f"{source}{f':{line}' if line else ''}{given}: {field}"


def describe_errors(errors: Sequence[Mapping[str, Any]], source: str | Path | None = None,
                    lines: KeyLines | None = None, prefix: Sequence[str] = (),
                    unions: Mapping[tuple[str, ...], Iterable[str]] | None = None,
                    known: Iterable[str] = ()) -> str:
    """The first error as one line: ``source:line: dotted.field: message (and N more problems)``.

    Args:
        errors: ``ValidationError.errors()``, or entries of the same shape (``loc``, ``msg``,
            ``type``) from checks made after validation.
        source: The file; omitted from the line when ``None``.
        lines: Key path -> line (``load_yaml``); the line of the nearest enclosing key is used.
        prefix: Key path of the validated mapping inside its file (``("camera",)``).
        unions: Key path -> tags of a tagged union at that path: pydantic puts the tag in the
            location (``camera.replay.fps``), which is dropped (``camera.fps``).
        known: The keys of the mapping that holds the first unknown key: an unknown key
            close to one of them is named as its typo even when that key is optional
            (``rulse`` -> ``rules``, ``instance.crop_sise`` -> ``crop_size``).

    Returns:
        The line, without a trailing newline.
    """
    # A misspelt key is both unknown and (under its right name) missing: name the typo, on its own line.
    errors = sorted(errors, key=lambda e: e.get("type") != "extra_forbidden")
    first = errors[0]
    hint = ""
    if first.get("type") == "extra_forbidden":
        parent, key = tuple(first["loc"][:-1]), str(first["loc"][-1])
        missing = [str(e["loc"][-1]) for e in errors if e.get("type") == "missing" and tuple(e["loc"][:-1]) == parent]
        close = difflib.get_close_matches(key, missing, n=1)
        if not close:
            close = difflib.get_close_matches(key, [k for k in known if k != key], n=1)
        if close:  # one typo, not two problems
            hint = f" (did you mean '{close[0]}'?)"
            errors = [e for e in errors if not (e.get("type") == "missing" and tuple(e["loc"]) == (*parent, close[0]))]
    loc = [*prefix, *_tree_path(first["loc"], unions)]
    if first.get("type") == "union_tag_invalid":
        loc.append("backend")
    more = len(errors) - 1
    # where the rest are, so that one run names every field to look at (a typo's twin is gone)
    others = list(dict.fromkeys(".".join([*prefix, *_tree_path(e["loc"], unions)]) or "(top level)"
                                for e in errors[1:]))
    named = f": {some_names(others, 3)}" if others else ""
    tail = f" (and {more} more problem{'s' if more > 1 else ''}{named})" if more else ""
    where = _where(source, lines or {}, loc) if source is not None else "".join(f"{'.'.join(loc)}: " if loc else "")
    return f"{where}{_message(first)}{hint}{tail}"


def validate(model: type[ModelT] | pydantic.TypeAdapter, tree: Any, source: str | Path | None = None,
             lines: KeyLines | None = None, prefix: Sequence[str] = (),
             unions: Mapping[tuple[str, ...], Iterable[str]] | None = None) -> Any:
    """Validate a tree against a model (or a ``TypeAdapter``); the first problem as a ``ConfigError``.

    Raises:
        ConfigError: ``describe_errors`` of the validation error.
    """
    try:
        if isinstance(model, pydantic.TypeAdapter):
            return model.validate_python(tree)
        return model.model_validate(tree)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        unknown = next((e for e in errors if e.get("type") == "extra_forbidden"), None)
        known = _fields_at(model, unknown["loc"][:-1]) if unknown is not None and isinstance(model, type) else ()
        path = _tree_path(unknown["loc"], unions) if unknown is not None else ()
        # a key a --set gave is meant to replace one: beside its look-alike it is a typo too (camera.fsp)
        by_set = isinstance((lines or {}).get(path), str)
        if known and not by_set:  # a key set beside a mere look-alike is an extra key (px_per_inch), a near copy a typo
            here = tree
            for key in path[:-1]:
                here = here.get(key) if isinstance(here, Mapping) else None
            typo = str(unknown["loc"][-1])
            known = tuple(k for k in known if not (isinstance(here, Mapping) and k in here)
                          or difflib.SequenceMatcher(None, typo, k).ratio() >= 0.8)
        message = describe_errors(errors, source, lines, prefix, unions, known)
        if unknown is not None and isinstance(model, type) and "did you mean" not in message:
            elsewhere = paths_of_key(model, str(unknown["loc"][-1]))
            if elsewhere and len(unknown["loc"]) == 1:  # a top-level key that lives in sections
                message = message.replace("unknown key", f"unknown key here (it is under {', '.join(elsewhere)})", 1)
        raise ConfigError(message) from None


def _tree_path(loc: Sequence[Any], unions: Mapping[tuple[str, ...], Iterable[str]] | None) -> tuple[str, ...]:
    """A pydantic error location as a key path of the tree.

    A tagged union's tag, which pydantic puts in the location (``camera.replay.fps``), is
    dropped (``camera.fps``).
    """
    tags = {tuple(k): frozenset(v) for k, v in (unions or {}).items()}
    path: list[str] = []
    dropped = None
    for item in loc:
        if dropped != tuple(path) and str(item) in tags.get(tuple(path), ()):
            dropped = tuple(path)  # the tag once; a key of the same name below it stays (camera.replay)
            continue
        path.append(str(item))
    return tuple(path)


def _models_in(annotation: Any) -> list[type]:
    """The pydantic models an annotation names, through Optional, Union and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _fields_at(model: type, path: Sequence[Any]) -> tuple[str, ...]:
    """The keys of the schema at ``path`` inside ``model``; () if unknown.

    The path goes through optional sub-models and tagged unions, whose tag is the next
    item of the path, as pydantic gives it.
    """
    path = [str(key) for key in path]
    while path:
        field = getattr(model, "model_fields", {}).get(path.pop(0))
        if field is None:
            return ()
        models = _models_in(field.annotation)
        tagged = [m for m in models if path and any(
            typing.get_origin(f.annotation) is typing.Literal and path[0] in map(str, typing.get_args(f.annotation))
            for f in m.model_fields.values())]
        if len(models) > 1 and tagged:  # the union member the tag names
            model = tagged[0]
            path.pop(0)
        else:
            model = models[0] if models else None
        if model is None:
            return ()
    return tuple(getattr(model, "model_fields", {}))


def paths_of_key(model: type, key: str, depth: int = 3) -> list[str]:
    """Dotted paths where the schema ``model`` has a key named ``key`` (sub-models up to ``depth``).

    For an unknown key that belongs one level down (``optim`` -> ``centroid.optim``,
    ``instance.optim``).
    """
    found: list[str] = []

    def walk(m: type, prefix: tuple[str, ...]) -> None:
        for name, field in getattr(m, "model_fields", {}).items():
            here = (*prefix, name)
            if name == key and prefix:
                found.append(".".join(here))
            if len(here) < depth:
                for sub in _models_in(field.annotation):
                    walk(sub, here)

    walk(model, ())
    return sorted(dict.fromkeys(found))


def load_tree(path: str | Path, overrides: Iterable[str] = (), what: str = "file") -> tuple[Any, dict]:
    """``load_yaml``, then ``apply_overrides`` and ``expand_tree``: the tree to validate and its key lines."""
    tree, lines = load_yaml(path, what)
    overrides = list(overrides)
    tree = expand_tree(apply_overrides(tree, overrides), path, lines)
    return tree, override_lines(overrides, lines)


def override_lines(overrides: Iterable[str], lines: KeyLines | None = None) -> dict:
    """``lines`` with every key a ``--set`` gave blamed on that ``--set``.

    A key set by ``--set`` is blamed on the ``--set``, not on the file's line that it
    replaced, and so is a section that only a ``--set`` names (``centroid.optm`` in
    ``--set centroid.optm.lr=1``).

    Returns:
        Key path -> line number, or ``"--set KEY=VALUE"`` (``describe_errors`` then reads
        ``FILE with --set KEY=VALUE: field: message``).
    """
    overrides = list(overrides)
    lines = {**(lines or {}), **{_override_key(o): f"--set {o}" for o in overrides}}
    for o in overrides:
        key = _override_key(o)
        for n in range(1, len(key)):
            lines.setdefault(key[:n], f"--set {o}")
    return lines


def load_config(path: str | Path, model: type[ModelT], overrides: Iterable[str] = ()) -> ModelT:
    """Load, override, expand and validate a YAML file against ``model``.

    Raises:
        ConfigError: ``file:line: field: message`` for the first problem.
    """
    tree, lines = load_tree(path, overrides)
    return validate(model, tree, path, lines)
